//! Open newtypes for wire values that can grow (command ids, status codes, page
//! types, exit codes): named constants, unknown values keep their number, and `Debug`
//! prints the name or the hex.

/// Declare `pub struct $name(pub $repr)` with named constants and a name lookup.
///
/// ```
/// softsev_abi::open_enum! {
///     /// A demo.
///     pub struct Demo(u32) {
///         /// One.
///         ONE = 1,
///     }
/// }
/// assert_eq!(format!("{:?}", Demo::ONE), "ONE");
/// assert_eq!(format!("{:?}", Demo(7)), "Demo(0x7)");
/// ```
#[macro_export]
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[repr(transparent)]
        $vis struct $name(pub $repr);

        #[allow(missing_docs)]
        impl $name {
            $( $(#[$vmeta])* pub const $variant: $name = $name($value); )*

            /// Every named value.
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),* ];

            /// The spec name of this value, if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some(stringify!($variant)), )*
                    _ => None,
                }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{} ({:#x})", n, self.0),
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self { $name(v) }
        }
        impl From<$name> for $repr {
            fn from(v: $name) -> Self { v.0 }
        }
    };
}
