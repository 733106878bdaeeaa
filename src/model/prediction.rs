//! The predictive models' vocabulary shared by the job files, the models
//! and the generator.

/// Which model of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// BG/NBD (Fader, Hardie & Lee 2005).
    #[default]
    BgNbd,
    /// MBG/NBD (Batislam et al. 2007): dropout possible at the first purchase.
    Modified,
}
