//! **Pure.** placeholder
