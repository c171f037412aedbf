//! RTP observers of a router, as mediasoup's: the AudioLevelObserver
//! reports the loudest audio producers every interval (from the
//! `ssrc-audio-level` header extension, RFC 6464), and the
//! ActiveSpeakerObserver names the dominant speaker, changing only when
//! another producer has been clearly louder for a while (so that a cough
//! does not move the spotlight).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ids::ProducerId;

/// Settings of an AudioLevelObserver.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AudioLevelObserverOptions {
    /// Most producers reported per interval. Default 1.
    pub max_entries: usize,
    /// Quietest average volume (dBov, -127..0) that counts. Default -80.
    pub threshold: i8,
    /// Reporting interval. Default 1000 ms.
    pub interval: Duration,
}

impl Default for AudioLevelObserverOptions {
    fn default() -> Self {
        Self {
            max_entries: 1,
            threshold: -80,
            interval: Duration::from_millis(1000),
        }
    }
}

/// Settings of an ActiveSpeakerObserver.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ActiveSpeakerObserverOptions {
    /// How often the dominant speaker is re-evaluated. Default 300 ms.
    pub interval: Duration,
    /// A challenger must be the loudest for this long to take over. Default 900 ms.
    pub hold: Duration,
    /// Quietest volume (dBov) that counts as speech. Default -60.
    pub threshold: i8,
}

impl Default for ActiveSpeakerObserverOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(300),
            hold: Duration::from_millis(900),
            threshold: -60,
        }
    }
}

/// One producer's volume in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioLevel {
    pub producer_id: ProducerId,
    /// Average volume over the interval, in dBov (-127 silent .. 0 loudest).
    pub volume: i8,
}

/// What an observer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObserverReport {
    Volumes(Vec<AudioLevel>),
    Silence,
    DominantSpeaker(AudioLevel),
}

#[derive(Default, Clone, Copy)]
struct Accumulator {
    sum: i64,
    count: u32,
}

impl Accumulator {
    fn add(&mut self, volume: i8) {
        self.sum += i64::from(volume);
        self.count += 1;
    }

    fn average(&self) -> Option<i8> {
        (self.count > 0).then(|| (self.sum / i64::from(self.count)) as i8)
    }
}

pub(crate) enum Kind {
    AudioLevel(AudioLevelObserverOptions),
    ActiveSpeaker {
        options: ActiveSpeakerObserverOptions,
        dominant: Option<ProducerId>,
        /// The loudest non-dominant producer and since when it has been.
        challenger: Option<(ProducerId, Instant)>,
    },
}

pub(crate) struct RtpObserver {
    pub(crate) kind: Kind,
    pub(crate) paused: bool,
    levels: HashMap<ProducerId, Accumulator>,
    next: Option<Instant>,
    was_silent: bool,
}

impl RtpObserver {
    pub(crate) fn audio_level(options: AudioLevelObserverOptions) -> Self {
        Self::new(Kind::AudioLevel(options))
    }

    pub(crate) fn active_speaker(options: ActiveSpeakerObserverOptions) -> Self {
        Self::new(Kind::ActiveSpeaker {
            options,
            dominant: None,
            challenger: None,
        })
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            paused: false,
            levels: HashMap::new(),
            next: None,
            was_silent: true,
        }
    }

    pub(crate) fn add_producer(&mut self, id: ProducerId) {
        self.levels.entry(id).or_default();
    }

    pub(crate) fn remove_producer(&mut self, id: ProducerId) {
        self.levels.remove(&id);
        if let Kind::ActiveSpeaker {
            dominant,
            challenger,
            ..
        } = &mut self.kind
        {
            if *dominant == Some(id) {
                *dominant = None;
            }
            if challenger.is_some_and(|(c, _)| c == id) {
                *challenger = None;
            }
        }
    }

    pub(crate) fn has_producer(&self, id: ProducerId) -> bool {
        self.levels.contains_key(&id)
    }

    /// A packet's audio level: RFC 6464 carries -dBov in 0..=127.
    pub(crate) fn on_level(&mut self, id: ProducerId, level: u8) {
        if self.paused {
            return;
        }
        if let Some(acc) = self.levels.get_mut(&id) {
            acc.add(-(level.min(127) as i8));
        }
    }

    fn interval(&self) -> Duration {
        match &self.kind {
            Kind::AudioLevel(o) => o.interval,
            Kind::ActiveSpeaker { options, .. } => options.interval,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// At each interval's end: what to report (volumes, silence once, or a
    /// new dominant speaker).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<ObserverReport> {
        let next = *self.next.get_or_insert(now + self.interval());
        if now < next {
            return None;
        }
        self.next = Some(now + self.interval());
        let mut averages: Vec<AudioLevel> = self
            .levels
            .iter_mut()
            .filter_map(|(id, acc)| {
                let avg = acc.average();
                *acc = Accumulator::default();
                avg.map(|volume| AudioLevel {
                    producer_id: *id,
                    volume,
                })
            })
            .collect();
        averages.sort_by(|a, b| {
            b.volume
                .cmp(&a.volume)
                .then(a.producer_id.cmp(&b.producer_id))
        });
        match &mut self.kind {
            Kind::AudioLevel(options) => {
                averages.retain(|a| a.volume >= options.threshold);
                averages.truncate(options.max_entries);
                if averages.is_empty() {
                    if self.was_silent {
                        return None;
                    }
                    self.was_silent = true;
                    Some(ObserverReport::Silence)
                } else {
                    self.was_silent = false;
                    Some(ObserverReport::Volumes(averages))
                }
            }
            Kind::ActiveSpeaker {
                options,
                dominant,
                challenger,
            } => {
                let loudest = averages
                    .first()
                    .copied()
                    .filter(|a| a.volume >= options.threshold)?;
                if *dominant == Some(loudest.producer_id) {
                    *challenger = None;
                    return None;
                }
                if dominant.is_none() {
                    *dominant = Some(loudest.producer_id);
                    return Some(ObserverReport::DominantSpeaker(loudest));
                }
                match challenger {
                    Some((id, since)) if *id == loudest.producer_id => {
                        if now.saturating_duration_since(*since) >= options.hold {
                            *dominant = Some(loudest.producer_id);
                            *challenger = None;
                            return Some(ObserverReport::DominantSpeaker(loudest));
                        }
                        None
                    }
                    _ => {
                        *challenger = Some((loudest.producer_id, now));
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_levels_report_the_loudest_above_threshold_then_silence_once() {
        let mut o = RtpObserver::audio_level(AudioLevelObserverOptions {
            max_entries: 2,
            ..Default::default()
        });
        let (a, b, c) = (ProducerId::new(), ProducerId::new(), ProducerId::new());
        for p in [a, b, c] {
            o.add_producer(p);
        }
        let t0 = Instant::now();
        assert_eq!(o.handle_timeout(t0), None);
        for _ in 0..10 {
            o.on_level(a, 30);
            o.on_level(b, 10);
            o.on_level(c, 100);
        }
        let report = o.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(
            report,
            ObserverReport::Volumes(vec![
                AudioLevel {
                    producer_id: b,
                    volume: -10
                },
                AudioLevel {
                    producer_id: a,
                    volume: -30
                },
            ])
        );
        assert_eq!(
            o.handle_timeout(t0 + Duration::from_secs(2)),
            Some(ObserverReport::Silence)
        );
        assert_eq!(
            o.handle_timeout(t0 + Duration::from_secs(3)),
            None,
            "silence is said once"
        );
    }

    #[test]
    fn the_dominant_speaker_changes_only_after_the_hold_time() {
        let mut o = RtpObserver::active_speaker(ActiveSpeakerObserverOptions::default());
        let (a, b) = (ProducerId::new(), ProducerId::new());
        o.add_producer(a);
        o.add_producer(b);
        let mut t = Instant::now();
        o.handle_timeout(t);
        let step = Duration::from_millis(300);
        let tick = |o: &mut RtpObserver, t: &mut Instant, la: u8, lb: u8| {
            o.on_level(a, la);
            o.on_level(b, lb);
            *t += step;
            o.handle_timeout(*t)
        };
        assert!(
            matches!(tick(&mut o, &mut t, 20, 50), Some(ObserverReport::DominantSpeaker(l)) if l.producer_id == a)
        );
        // One loud interval from b (a cough) changes nothing.
        assert_eq!(tick(&mut o, &mut t, 50, 20), None);
        assert_eq!(tick(&mut o, &mut t, 20, 50), None);
        // b keeps talking: it takes over after the hold time.
        assert_eq!(tick(&mut o, &mut t, 50, 20), None);
        assert_eq!(tick(&mut o, &mut t, 50, 20), None);
        assert_eq!(tick(&mut o, &mut t, 50, 20), None);
        assert!(
            matches!(tick(&mut o, &mut t, 50, 20), Some(ObserverReport::DominantSpeaker(l)) if l.producer_id == b)
        );
    }
}
