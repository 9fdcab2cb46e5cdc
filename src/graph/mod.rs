//! `nsfw graph`: a picture of the topology. [`model`] says what is shown, [`layout`] where,
//! and the renderers how: standalone SVG ([`svg`]), Graphviz ([`dot`]) and Mermaid
//! ([`mermaid`]). [`live`] overlays the kernel's truth: what differs from the file (from the
//! engine's plan) in red with the reason, and the counters.

mod dot;
pub(crate) mod layout;
pub(crate) mod live;
mod mermaid;
pub(crate) mod model;
mod svg;
mod text;
mod uplink;

pub(crate) use live::Live;

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Svg,
    Dot,
    Mermaid,
}

/// The picture of `t` (with the kernel's truth over it when `live` is given).
pub(crate) fn draw(t: &crate::topology::Topology, live: Option<&Live>, format: Format) -> String {
    let mut m = model::build(t);
    if let Some(l) = live {
        l.overlay(t, &mut m);
    }
    match format {
        Format::Svg => svg::render(&m, &layout::layout(&m)),
        Format::Dot => dot::render(&m),
        Format::Mermaid => mermaid::render(&m),
    }
}
