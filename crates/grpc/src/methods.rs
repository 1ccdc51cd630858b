//! The methods of a gRPC service as an enum, for the tables that say who
//! may call each ([`crate::access`], [`crate::controller::access`]).
//!
//! Each table is a `match` over the enum, so a method without a rule does
//! not compile; and each enum is checked against the service in the
//! compiled descriptor set ([`proto_methods`], in the tables' tests), so a
//! method added to the proto without a rule, or a rule left behind by a
//! removed one, fails a test.

/// `methods!(#[doc] Enum of "pkg.Service": A, B, C)`: the enum `Enum` of
/// the methods, in the proto's order, with `Enum::ALL`, `Enum::SERVICE`
/// and `name()` (the method's name as the proto spells it).
macro_rules! methods {
    ($(#[$doc:meta])* $enum:ident of $service:literal: $($name:ident),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $enum {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $name,
            )+
        }

        impl $enum {
            /// Every method, in the proto's order.
            pub const ALL: &'static [$enum] = &[$($enum::$name),+];

            /// The fully qualified name of the service.
            pub const SERVICE: &'static str = $service;

            /// The method's name as the proto spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$name => stringify!($name),)+
                }
            }
        }
    };
}

pub(crate) use methods;

/// The methods of `service` (`trellis.v1.Agent`) in the compiled
/// descriptor set, in the proto's order.
#[cfg(test)]
pub(crate) fn proto_methods(service: &str) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(trellis_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    set.file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter().map(move |s| (package.clone(), s))
        })
        .find(|(p, s)| format!("{p}.{}", s.name()) == service)
        .map(|(_, s)| s.method.iter().map(|m| m.name().to_owned()).collect())
        .unwrap_or_else(|| panic!("{service} in the descriptor set"))
}
