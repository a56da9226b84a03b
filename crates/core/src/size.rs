//! Node sizes, named as in the 2011 system.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSize {
    ExtraSmall,
    Small,
    Medium,
    Large,
    ExtraLarge,
}

impl NodeSize {
    pub const ALL: [NodeSize; 5] =
        [NodeSize::ExtraSmall, NodeSize::Small, NodeSize::Medium, NodeSize::Large, NodeSize::ExtraLarge];

    /// Cores a node of this size runs tasks on. ExtraSmall has a shared core, counted as one.
    pub fn cores(self) -> u32 {
        match self {
            NodeSize::ExtraSmall | NodeSize::Small => 1,
            NodeSize::Medium => 2,
            NodeSize::Large => 4,
            NodeSize::ExtraLarge => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeSize::ExtraSmall => "ExtraSmall",
            NodeSize::Small => "Small",
            NodeSize::Medium => "Medium",
            NodeSize::Large => "Large",
            NodeSize::ExtraLarge => "ExtraLarge",
        }
    }

    /// Parses a size name, case-insensitively.
    pub fn parse(text: &str) -> Result<NodeSize> {
        NodeSize::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(text.trim())).ok_or_else(|| {
            Error::invalid(format!(
                "size \"{text}\" is not a node size (expected one of ExtraSmall, Small, Medium, Large, ExtraLarge)"
            ))
        })
    }

    /// Parses the size of a burst node: every size but ExtraSmall, whose shared core cannot
    /// run compute work.
    pub fn parse_burst(text: &str) -> Result<NodeSize> {
        match NodeSize::parse(text)? {
            NodeSize::ExtraSmall => Err(Error::invalid(
                "size \"ExtraSmall\" cannot be used for burst nodes: its core is shared (choose Small, Medium, Large or ExtraLarge)",
            )),
            size => Ok(size),
        }
    }
}

impl std::fmt::Display for NodeSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_the_2011_core_counts() {
        let cores: Vec<u32> = ["Small", "Medium", "Large", "ExtraLarge"]
            .iter()
            .map(|s| NodeSize::parse_burst(s).unwrap().cores())
            .collect();
        assert_eq!(cores, [1, 2, 4, 8]);
    }

    #[test]
    fn extra_small_is_refused_for_burst_nodes_with_the_reason() {
        let err = NodeSize::parse_burst("extrasmall").unwrap_err();
        assert!(err.message.contains("ExtraSmall"), "{err}");
        assert!(err.message.contains("shared"), "{err}");
    }

    #[test]
    fn unknown_size_names_the_value_and_the_choices() {
        let err = NodeSize::parse("Huge").unwrap_err();
        assert!(err.message.contains("\"Huge\"") && err.message.contains("Medium"), "{err}");
    }
}
