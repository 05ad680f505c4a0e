//! The cost model's primitives, below the ImagePlan: layer estimates
//! (`estimate`), the profiles' numbers with their sources (`profile`), and
//! the terms that turn sizes into seconds (`model`: pull, unpack, start,
//! build). They name no layout type, so both readers use them: the layout
//! prices each codec with them (`compression = "auto"`), and `cost` prices
//! the whole ImagePlan, decides `auto` placements and reports.

pub mod estimate;
pub mod model;
pub mod profile;
