//! Counters from switchyard's /metrics, read before and after a run: how
//! many publications crossed the broker (Redis messages per publication in
//! cross-node runs).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sum of every sample of `name` (all label sets) in a Prometheus text
/// exposition.
pub fn sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET http://`authority`/metrics.
pub async fn fetch(authority: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok(body.to_owned())
}

/// `name` summed over every node in `authorities`.
pub async fn total(authorities: &[String], name: &str) -> anyhow::Result<f64> {
    let mut sum_all = 0.0;
    for authority in authorities {
        sum_all += sum(&fetch(authority).await?, name);
    }
    Ok(sum_all)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_a_counter_over_its_labels_and_nothing_else() {
        let text = "# TYPE switchyard_broker_received_total counter\n\
                    switchyard_broker_received_total 41\n\
                    switchyard_broker_received_total_other 5\n\
                    switchyard_messages_sent_total{kind=\"a\"} 2\n\
                    switchyard_messages_sent_total{kind=\"b\"} 3\n";
        assert_eq!(super::sum(text, "switchyard_broker_received_total"), 41.0);
        assert_eq!(super::sum(text, "switchyard_messages_sent_total"), 5.0);
        assert_eq!(super::sum(text, "missing"), 0.0);
    }
}
