//! Metrics for a monitoring system: `nsfw status --format openmetrics` and `nsfw watch
//! --metrics`. [`host`] turns what `nsfw status` reads into metric families, [`watch`] keeps
//! the watcher's own, [`http`] serves them; this module writes them.
//!
//! The format is Prometheus's text exposition format (0.0.4), the one node_exporter's
//! textfile collector reads and `promtool check metrics` lints, ending with OpenMetrics' `# EOF`
//! (a comment to a 0.0.4 reader): a `# HELP` and a `# TYPE` line per family, counters named
//! `…_total` in both, units in names (`_seconds`, `_packets`, `_bytes`, `_connections`,
//! `_entries`), every name `nsfw_…`, label values escaped.

pub(crate) mod host;
pub(crate) mod http;
pub(crate) mod watch;

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// One sample: the suffix after the family's name (`_bucket`, `_sum`, `_count`, or none), its
/// labels and value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub ty: Type,
    pub samples: Vec<Sample>,
}

impl Family {
    pub(crate) fn new(name: &'static str, ty: Type, help: &'static str) -> Family {
        Family {
            name,
            help,
            ty,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of the family itself.
    pub(crate) fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The families in the text format (families without samples are left out).
pub(crate) fn render(families: &[Family]) -> String {
    let mut s = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(s, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\"));
        let _ = writeln!(s, "# TYPE {} {}", f.name, f.ty.as_str());
        for x in &f.samples {
            let _ = write!(s, "{}{}", f.name, x.suffix);
            if !x.labels.is_empty() {
                let l: Vec<String> = x
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", label_value(v)))
                    .collect();
                let _ = write!(s, "{{{}}}", l.join(","));
            }
            let _ = writeln!(s, " {}", number(x.value));
        }
    }
    s
}

/// The end of an exposition (OpenMetrics' terminator; a comment to 0.0.4 readers).
pub(crate) const EOF: &str = "# EOF\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_help_type_and_escaped_labels() {
        let mut f = Family::new("nsfw_x_total", Type::Counter, "Things.");
        f.add(vec![("a", "q\"\\\n".into())], 3.0);
        let mut g = Family::new("nsfw_y", Type::Gauge, "Y.");
        g.add(vec![], 0.25);
        let empty = Family::new("nsfw_z", Type::Gauge, "Z.");
        assert_eq!(
            render(&[f, g, empty]),
            "# HELP nsfw_x_total Things.\n# TYPE nsfw_x_total counter\nnsfw_x_total{a=\"q\\\"\\\\\\n\"} 3\n\
             # HELP nsfw_y Y.\n# TYPE nsfw_y gauge\nnsfw_y 0.25\n"
        );
    }
}
