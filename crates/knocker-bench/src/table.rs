//! The flood benches' report: one markdown table with the daemons side by side (one column
//! each, in the order they ran) and, for each incumbent (knockd, fwknopd), the ratio of its
//! figure to knockerd's.

/// One figure of one run: the text shown, and the number a ratio is taken of (`None`: no
/// ratio, e.g. "5/5").
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub value: Option<f64>,
}

impl Cell {
    /// A cell with a ratio.
    pub fn num(text: impl Into<String>, value: f64) -> Cell {
        Cell {
            text: text.into(),
            value: Some(value),
        }
    }

    /// A cell without one.
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            value: None,
        }
    }
}

/// The median of alice's openings during a flood, in ms with a ratio ("-": none opened).
pub fn median_ms(openings: &[Option<std::time::Duration>]) -> Cell {
    match crate::median(openings) {
        Some(d) => Cell::num(crate::fmt_ms(d), d.as_secs_f64()),
        None => Cell::text("-"),
    }
}

/// How many of alice's knocks during a flood opened, of how many, and how many of them she
/// `did` after the flood had ended (the sender finished first): "9/10 (2 sent after the flood
/// ended)".
pub fn opened(openings: &[Option<std::time::Duration>], after_flood: usize, did: &str) -> Cell {
    let late = if after_flood > 0 {
        format!(" ({after_flood} {did} after the flood ended)")
    } else {
        String::new()
    };
    Cell::text(format!(
        "{}/{}{late}",
        openings.iter().flatten().count(),
        openings.len()
    ))
}

/// One daemon's run on one case (flood), its cells in the order of the table's measures.
#[derive(Debug, Clone)]
pub struct Run {
    pub case: String,
    pub daemon: String,
    pub cells: Vec<Cell>,
}

/// The table: a row per case and measure, a column per daemon, then `INCUMBENT / knockerd` per
/// incumbent (`knockerd` is the daemon named exactly so). A ratio above 1 means knockerd's figure
/// is that many times smaller (less CPU, less memory, a faster opening).
pub fn side_by_side(measures: &[&str], runs: &[Run]) -> String {
    let mut daemons: Vec<&str> = Vec::new();
    let mut cases: Vec<&str> = Vec::new();
    for r in runs {
        if !daemons.contains(&r.daemon.as_str()) {
            daemons.push(&r.daemon);
        }
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    let ours = daemons.iter().position(|d| *d == KNOCKERD);
    let incumbents: Vec<&str> = daemons
        .iter()
        .copied()
        .filter(|d| ours.is_some() && *d != KNOCKERD)
        .collect();
    let mut out = String::new();
    let head: Vec<String> = ["flood".to_string(), "measure".to_string()]
        .into_iter()
        .chain(daemons.iter().map(|d| d.to_string()))
        .chain(incumbents.iter().map(|d| format!("{d} / knockerd")))
        .collect();
    out.push_str(&format!("| {} |\n", head.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
    let cell = |case: &str, daemon: &str, m: usize| -> Option<&Cell> {
        runs.iter()
            .find(|r| r.case == case && r.daemon == daemon)
            .and_then(|r| r.cells.get(m))
    };
    for case in &cases {
        for (m, measure) in measures.iter().enumerate() {
            let mut row = vec![case.to_string(), measure.to_string()];
            row.extend(
                daemons
                    .iter()
                    .map(|d| cell(case, d, m).map_or_else(|| "-".to_string(), |c| c.text.clone())),
            );
            for inc in &incumbents {
                let theirs = cell(case, inc, m).and_then(|c| c.value);
                let mine = cell(case, KNOCKERD, m).and_then(|c| c.value);
                row.push(ratio(theirs, mine));
            }
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }
    out
}

/// The daemon name the ratios are taken against.
pub const KNOCKERD: &str = "knockerd";

/// `theirs / mine` as "3.6x"; "" when either is missing, or mine is 0.
fn ratio(theirs: Option<f64>, mine: Option<f64>) -> String {
    match (theirs, mine) {
        (Some(t), Some(m)) if m > 0.0 && t.is_finite() => format!("{:.1}x", t / m),
        _ => String::new(),
    }
}

/// `/proc/loadavg`'s first three fields ("1.02 0.87 0.66"), or "?".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(case: &str, daemon: &str, cpu: f64, opened: &str) -> Run {
        Run {
            case: case.into(),
            daemon: daemon.into(),
            cells: vec![Cell::num(format!("{cpu:.2}"), cpu), Cell::text(opened)],
        }
    }

    #[test]
    fn daemons_side_by_side_with_a_ratio_per_incumbent() {
        let t = side_by_side(
            &["CPU", "alice opened"],
            &[
                run("1 000 sources", "knockd 0.8", 8.0, "5/5"),
                run("1 000 sources", "knockerd", 2.0, "5/5"),
                run("1 000 000 sources", "knockd 0.8", 14.0, "0/5"),
                run("1 000 000 sources", "knockerd", 0.0, "5/5"),
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "| flood | measure | knockd 0.8 | knockerd | knockd 0.8 / knockerd |",
                "|---|---|---|---|---|",
                "| 1 000 sources | CPU | 8.00 | 2.00 | 4.0x |",
                "| 1 000 sources | alice opened | 5/5 | 5/5 |  |",
                "| 1 000 000 sources | CPU | 14.00 | 0.00 |  |",
                "| 1 000 000 sources | alice opened | 0/5 | 5/5 |  |",
            ]
        );
    }

    #[test]
    fn knockerd_alone_has_no_ratio_column_and_a_missing_run_is_a_dash() {
        let t = side_by_side(
            &["CPU"],
            &[
                run("a", "knockerd", 1.0, ""),
                run("b", "knockerd-packet", 2.0, ""),
            ],
        );
        assert!(
            t.starts_with(
                "| flood | measure | knockerd | knockerd-packet | knockerd-packet / knockerd |\n"
            ),
            "{t}"
        );
        assert!(t.contains("| a | CPU | 1.00 | - |  |"), "{t}");
        let alone = side_by_side(&["CPU"], &[run("b", "knockerd-packet", 2.0, "")]);
        assert!(
            alone.starts_with("| flood | measure | knockerd-packet |\n"),
            "{alone}"
        );
    }
}
