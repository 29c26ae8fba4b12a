//! Printing bitmaps by the names of their flags.

use core::fmt;

/// Prints the named bits of `bits` separated by `sep`, then any bits without
/// a name in hex, so nothing set on the wire is hidden from the reader.
/// Prints `empty` when no bit is set.
#[derive(Debug, Clone, Copy)]
pub struct FlagNames<'a> {
    pub bits: u32,
    pub names: &'a [(u32, &'a str)],
    pub sep: &'a str,
    pub empty: &'a str,
}

impl<'a> FlagNames<'a> {
    pub fn new(bits: u32, names: &'a [(u32, &'a str)]) -> Self {
        Self {
            bits,
            names,
            sep: " ",
            empty: "0",
        }
    }
}

impl fmt::Display for FlagNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bits == 0 {
            return f.write_str(self.empty);
        }
        let mut first = true;
        let mut rest = self.bits;
        for &(bit, name) in self.names {
            if self.bits & bit == bit && bit != 0 {
                if !first {
                    f.write_str(self.sep)?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(self.sep)?;
            }
            write!(f, "0x{rest:x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_bits_and_shows_the_rest_in_hex() {
        let names = [(1, "a"), (4, "c")];
        assert_eq!(FlagNames::new(0x15, &names).to_string(), "a c 0x10");
        assert_eq!(FlagNames::new(0, &names).to_string(), "0");
        let f = FlagNames {
            bits: 5,
            names: &names,
            sep: ",",
            empty: "(off)",
        };
        assert_eq!(f.to_string(), "a,c");
    }
}
