//! The ratios a side-by-side run is for: every server against the
//! reference (switchyard) at the same size, rate and round.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a ratio needs from one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub server: String,
    pub round: String,
    pub clients: u64,
    pub rate: u64,
    pub per_cpu_second: Option<f64>,
    pub p99_ms: f64,
    pub lost: Option<u64>,
}

/// Reads a broadcast or channels report (label "<server> <round>").
pub fn row(report: &serde_json::Value) -> Option<Row> {
    let mut label = report["label"].as_str()?.split_whitespace();
    Some(Row {
        server: label.next()?.to_owned(),
        round: label.next().unwrap_or("").to_owned(),
        clients: report["subscribers"].as_u64()?,
        rate: report["rate"].as_u64()?,
        per_cpu_second: report["deliveries_per_cpu_second"].as_f64(),
        p99_ms: report["latency_us"]["p99"].as_f64()? / 1000.0,
        lost: report["lost"].as_u64(),
    })
}

/// One Markdown line per (size, rate, round, other server).
pub fn table(rows: &[Row], reference: &str) -> String {
    let mut out = format!(
        "| clients | publications/s | round | {reference} ÷ | deliveries per CPU-s, ratio | p99 ms, {reference} / them | lost, {reference} / them |\n\
         | ---: | ---: | --- | --- | ---: | ---: | ---: |\n"
    );
    let mut groups: BTreeMap<(u64, u64, &str), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.clients, r.rate, r.round.as_str())).or_default().push(r);
    }
    let lost = |l: Option<u64>| l.map_or("-".to_owned(), |n| n.to_string());
    for ((clients, rate, round), group) in groups {
        let Some(us) = group.iter().find(|r| r.server == reference) else { continue };
        for them in group.iter().filter(|r| r.server != reference) {
            let ratio =
                us.per_cpu_second.zip(them.per_cpu_second).map_or("-".to_owned(), |(a, b)| format!("{:.2}×", a / b));
            out.push_str(&format!(
                "| {clients} | {rate} | {round} | {} | {ratio} | {:.2} / {:.2} | {} / {} |\n",
                them.server,
                us.p99_ms,
                them.p99_ms,
                lost(us.lost),
                lost(them.lost)
            ));
        }
    }
    out
}

/// `--scenario compare`: the ratio table of the reports given.
pub fn run(inputs: &[PathBuf], reference: &str) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for input in inputs {
        rows.extend(row(&serde_json::from_slice(&std::fs::read(input)?)?));
    }
    print!("{}", table(&rows, reference));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, per_cpu: f64, p99_us: u64) -> serde_json::Value {
        serde_json::json!({
            "label": label, "subscribers": 100, "rate": 5000, "lost": 0,
            "deliveries_per_cpu_second": per_cpu, "latency_us": {"p99": p99_us}
        })
    }

    #[test]
    fn compares_within_a_round_only() {
        let rows: Vec<Row> = [
            report("switchyard r1", 1_000_000.0, 2_000),
            report("node-ws r1", 200_000.0, 9_000_000),
            report("node-ws r2", 100_000.0, 1_000),
        ]
        .iter()
        .filter_map(row)
        .collect();
        let table = table(&rows, "switchyard");
        assert!(table.contains("| 100 | 5000 | r1 | node-ws | 5.00× | 2.00 / 9000.00 | 0 / 0 |"), "{table}");
        assert!(!table.contains("r2"), "no reference in round 2: {table}");
    }
}
