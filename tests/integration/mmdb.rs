//! Writes tiny GeoIP2-City-shaped MaxMind DB files for tests (IPv4 only,
//! 24-bit records), following the MaxMind DB format specification: a binary
//! search tree over the address bits, a 16-byte separator, the data section,
//! then the metadata after its marker.

use std::net::Ipv4Addr;

/// One network and where it is.
pub struct Place<'a> {
    pub network: &'a str,
    pub city: &'a str,
    pub country: &'a str,
    pub iso_code: &'a str,
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

fn size_prefix(out: &mut Vec<u8>, type_id: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        _ => {
            let s = size - 285;
            assert!(s < 65536, "test values are small");
            (30, vec![(s >> 8) as u8, s as u8])
        }
    };
    if type_id <= 7 {
        out.push((type_id << 5) | first);
    } else {
        out.push(first);
        out.push(type_id - 7);
    }
    out.extend(extra);
}

enum V<'a> {
    Str(&'a str),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'a str, V<'a>)>),
    Array(Vec<V<'a>>),
}

fn uint(out: &mut Vec<u8>, type_id: u8, value: u64, width: usize) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().max(8 - width);
    size_prefix(out, type_id, 8 - skip);
    out.extend(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Str(s) => {
            size_prefix(out, 2, s.len());
            out.extend(s.as_bytes());
        }
        V::U16(n) => uint(out, 5, u64::from(*n), 2),
        V::U32(n) => uint(out, 6, u64::from(*n), 4),
        V::U64(n) => uint(out, 9, *n, 8),
        V::Map(pairs) => {
            size_prefix(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(out, &V::Str(k));
                encode(out, v);
            }
        }
        V::Array(items) => {
            size_prefix(out, 11, items.len());
            for v in items {
                encode(out, v);
            }
        }
    }
}

/// An mmdb mapping each place's network to its city and country.
pub fn city_db(places: &[Place]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for p in places {
        let (addr, len) = p.network.split_once('/').expect("a CIDR network");
        let addr: u32 = addr.parse::<Ipv4Addr>().unwrap().into();
        let len: usize = len.parse().unwrap();
        assert!((1..=32).contains(&len));
        let offset = data.len();
        encode(
            &mut data,
            &V::Map(vec![
                (
                    "city",
                    V::Map(vec![("names", V::Map(vec![("en", V::Str(p.city))]))]),
                ),
                (
                    "country",
                    V::Map(vec![
                        ("iso_code", V::Str(p.iso_code)),
                        ("names", V::Map(vec![("en", V::Str(p.country))])),
                    ]),
                ),
            ]),
        );
        let mut node = 0;
        for i in 0..len {
            let bit = ((addr >> (31 - i)) & 1) as usize;
            if i == len - 1 {
                nodes[node][bit] = Record::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Record::Node(n) => n,
                    _ => {
                        nodes.push([Record::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Record::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for pair in &nodes {
        for r in pair {
            let v = match *r {
                Record::Empty => count,
                Record::Node(n) => n,
                Record::Data(off) => count + 16 + off,
            };
            out.extend(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend([0u8; 16]);
    out.extend(&data);
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &mut out,
        &V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", V::Str("GeoIP2-City")),
            ("description", V::Map(vec![("en", V::Str("test data"))])),
            ("ip_version", V::U16(4)),
            ("languages", V::Array(vec![V::Str("en")])),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
        ]),
    );
    out
}
