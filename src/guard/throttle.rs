//! The Raspberry Pi firmware's throttle word (`get_throttled`, the same number `vcgencmd get_throttled`
//! prints): bits 0–3 are what is happening now, bits 16–19 whether it happened since boot.
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    pub under_voltage: bool,
    pub frequency_capped: bool,
    pub throttled: bool,
    pub soft_temp_limit: bool,
}

impl Flags {
    fn from_nibble(n: u32) -> Flags {
        Flags { under_voltage: n & 1 != 0, frequency_capped: n & 2 != 0, throttled: n & 4 != 0, soft_temp_limit: n & 8 != 0 }
    }

    pub fn any(self) -> bool {
        self.under_voltage || self.frequency_capped || self.throttled || self.soft_temp_limit
    }

    /// Human words for the set flags, e.g. "under-voltage, throttled".
    pub fn describe(self) -> String {
        let names = [
            (self.under_voltage, "under-voltage"),
            (self.frequency_capped, "frequency capped"),
            (self.throttled, "throttled"),
            (self.soft_temp_limit, "soft temperature limit"),
        ];
        let set: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        if set.is_empty() { "none".into() } else { set.join(", ") }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Throttle {
    pub raw: u32,
    pub now: Flags,
    pub since_boot: Flags,
}

impl Throttle {
    pub fn decode(raw: u32) -> Throttle {
        Throttle { raw, now: Flags::from_nibble(raw & 0xf), since_boot: Flags::from_nibble((raw >> 16) & 0xf) }
    }

    /// The sysfs file holds bare hex ("50005"); `vcgencmd` prints "throttled=0x50005". Both are accepted.
    pub fn parse(text: &str) -> Option<Throttle> {
        let t = text.trim();
        let t = t.strip_prefix("throttled=").unwrap_or(t);
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        u32::from_str_radix(t, 16).ok().map(Throttle::decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_since_boot_bits_decode_separately() {
        let t = Throttle::parse("50005\n").unwrap();
        assert_eq!(t.raw, 0x50005);
        assert_eq!(t.now, Flags { under_voltage: true, frequency_capped: false, throttled: true, soft_temp_limit: false });
        assert_eq!(t.since_boot, Flags { under_voltage: true, frequency_capped: false, throttled: true, soft_temp_limit: false });
        assert_eq!(t.now.describe(), "under-voltage, throttled");
    }

    #[test]
    fn past_events_do_not_count_as_live() {
        let t = Throttle::parse("throttled=0x80000").unwrap();
        assert!(!t.now.any());
        assert!(t.since_boot.soft_temp_limit && !t.since_boot.under_voltage);
        let t = Throttle::parse("0xA").unwrap();
        assert!(t.now.frequency_capped && t.now.soft_temp_limit && !t.now.throttled);
        assert_eq!(Throttle::parse("0").unwrap().now.describe(), "none");
    }

    #[test]
    fn garbage_is_not_a_reading() {
        assert_eq!(Throttle::parse(""), None);
        assert_eq!(Throttle::parse("hot"), None);
        assert_eq!(Throttle::parse("0x1FFFFFFFF"), None);
    }
}
