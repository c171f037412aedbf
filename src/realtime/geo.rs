//! Where a participant connects from: a city and country looked up in a
//! GeoIP2/GeoLite2 City database (MaxMind mmdb format) from `geoip.city_db`.
//! Without a database, or for addresses it does not know (private ranges,
//! loopback), the location stays empty.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;

use crate::model::Location;

pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl Geo {
    /// Reads the whole database into memory (GeoLite2 City is ~60 MB); a
    /// configured file that cannot be read is a start-up error, not a
    /// silently missing feature.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path)
            .with_context(|| format!("opening GeoIP database {}", path.display()))?;
        Ok(Self { reader })
    }

    /// English names of the city and the country (the country's ISO code
    /// when the database has no English name for it).
    pub fn locate(&self, ip: IpAddr) -> Location {
        let found = self
            .reader
            .lookup(ip)
            .and_then(|r| r.decode::<maxminddb::geoip2::City>());
        match found {
            Ok(Some(city)) => Location {
                city: city.city.names.english.map(str::to_string),
                country: city
                    .country
                    .names
                    .english
                    .or(city.country.iso_code)
                    .map(str::to_string),
            },
            Ok(None) => Location::default(),
            Err(e) => {
                tracing::debug!("GeoIP lookup of {ip} failed: {e}");
                Location::default()
            }
        }
    }
}
