//! The Prometheus recorder: installed once per process, rendered by the
//! node's own `/metrics` route together with the writers' per-thread
//! [`traffic_tally`], its histograms kept fresh by an upkeep task.

use crate::traffic_tally;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use switchyard_core::metric;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (the first call does; later calls reuse it) and
/// returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(metric::PROXY_DURATION.to_owned()), metric::LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(metric::BROKER_CATCH_UP.to_owned()), metric::LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(metric::CONSUMER_LATENCY.to_owned()), metric::LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, and then
            // that one records: our handle would render nothing, so say so.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed already; /metrics will be empty");
            }
            metric::describe();
            handle
        })
        .clone()
}

/// The text of `/metrics`: the recorder's series, with the messages and
/// bytes sent and received brought up to the connections' tally first, and the delivery
/// latency histogram, which the tally keeps.
pub fn render(handle: &PrometheusHandle) -> String {
    let totals = traffic_tally::totals();
    metric::messages_sent().absolute(totals.frames);
    metric::bytes_sent().absolute(totals.bytes);
    metric::messages_received().absolute(totals.messages_in);
    metric::bytes_received().absolute(totals.bytes_in);
    let mut text = handle.render();
    totals.render_latency(&mut text);
    text
}

/// Runs the recorder's upkeep (draining histogram samples) until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}
