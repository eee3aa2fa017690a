//! PostgreSQL write-ahead log positions.

use std::fmt;
use std::str::FromStr;

/// A position in the source's write-ahead log, printed as PostgreSQL does (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position, meaning "not set".
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The text is not an LSN of the form `HI/LO` in hexadecimal.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a log sequence number (expected the form 16/B374D848)")]
pub struct ParseLsnError(String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl From<pgmorph_replication::Lsn> for Lsn {
    fn from(value: pgmorph_replication::Lsn) -> Self {
        Lsn(value.0)
    }
}

impl From<Lsn> for pgmorph_replication::Lsn {
    fn from(value: Lsn) -> Self {
        pgmorph_replication::Lsn(value.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }

    #[test]
    fn converts_to_and_from_the_transport() {
        let ours = Lsn(0x16_B374_D848);
        let theirs: pgmorph_replication::Lsn = ours.into();
        assert_eq!(theirs.0, 0x16_B374_D848);
        assert_eq!(Lsn::from(theirs), ours);
    }

    #[test]
    fn rejects_garbage() {
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
    }
}
