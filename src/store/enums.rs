//! Fieldless enums read from outside: [`keywords!`] for the settings that
//! are one of a few words, [`byte_enum!`] for the codes stored as one byte.

/// `FromStr` for a fieldless enum written as one of a few keywords (the
/// text is trimmed first); anything else is an error that lists them.
macro_rules! keywords {
    ($t:ty { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($word => Ok(Self::$variant),)+
                    v => Err(format!("`{v}` is not one of {}", [$($word),+].join(", "))),
                }
            }
        }
    };
}
pub(crate) use keywords;

/// A fieldless enum stored as one byte (`as u8`): the enum, with these
/// discriminants, and `from_u8`, which is `None` for any other byte.
macro_rules! byte_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $n:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $n),+
        }

        impl $name {
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($n => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use byte_enum;
