//! `--scenario presence` and `--scenario join-leave`: presence at scale
//! across two nodes (`--url` and `--publish-url`).
//!
//! `presence`: `--connections` members subscribe to `--channel` (a
//! namespace with `presence = true`), half on each node; then for
//! `--duration` one client per node asks `presence` (and every tenth time
//! `presence_stats`) in a closed loop, alternating nodes; each answer is
//! timed from the request's write to the reply's last byte, and checked to
//! list every member. With `--target socket-io` the members join a room
//! and the question is a `presence` event that the peer answers with
//! `io.in(room).fetchSockets()` across its processes.
//!
//! `join-leave`: `--connections` members subscribe to `--channel` (a
//! namespace with `join_leave = true`), half on each node; then one client
//! subscribes and unsubscribes `--rate` times, alternating nodes; every
//! member must receive every join and leave, and the nodes' broker
//! messages (`--scrape`) are counted per event.

use crate::connection::{self, Reader, Writer};
use crate::{Args, Target, scrape};
use fastwebsockets::{Frame, OpCode, Payload};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A member: answers the server's pings and counts joins and leaves.
fn member(mut reader: Reader, mut writer: Writer, events: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
        while let Ok(frame) = reader.read_frame(&mut ignore).await {
            match frame.opcode {
                OpCode::Text if frame.payload.starts_with(b"{\"join\"") || frame.payload.starts_with(b"{\"leave\"") => {
                    events.fetch_add(1, Ordering::Relaxed);
                }
                OpCode::Text if &frame.payload[..] == b"{\"ping\":{}}" || &frame.payload[..] == b"2" => {
                    // switchyard's ping, or Engine.IO's.
                    let pong: &[u8] = if &frame.payload[..] == b"2" { b"3" } else { b"{\"pong\":{}}" };
                    if writer.write_frame(Frame::text(Payload::Borrowed(pong))).await.is_err() {
                        return;
                    }
                }
                OpCode::Ping => {
                    let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                    if writer.write_frame(pong).await.is_err() {
                        return;
                    }
                }
                OpCode::Close => return,
                _ => {}
            }
        }
    })
}

/// Subscribes `count` members, alternating between `urls`, `concurrency`
/// at a time; returns their tasks and their event counter.
async fn members(
    urls: &[String],
    target: Target,
    channel: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<()>>, Arc<AtomicU64>)> {
    let events = Arc::new(AtomicU64::new(0));
    let mut joining = JoinSet::new();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        if joining.len() >= concurrency
            && let Some(joined) = joining.join_next().await
        {
            let (reader, writer) = joined??;
            tasks.push(member(reader, writer, events.clone()));
        }
        let url = urls[i % urls.len()].clone();
        let channels = vec![channel.to_owned()];
        joining.spawn(async move { connection::connect(&url, target, &channels).await });
    }
    while let Some(joined) = joining.join_next().await {
        let (reader, writer) = joined??;
        tasks.push(member(reader, writer, events.clone()));
    }
    Ok((tasks, events))
}

/// Sends one command and waits for the reply with its id.
async fn ask(reader: &mut Reader, writer: &mut Writer, id: u64, command: &str) -> anyhow::Result<Vec<u8>> {
    let text = format!("{{\"id\":{id},{command}}}");
    request(reader, writer, text, format!("{{\"id\":{id},")).await
}

/// Writes `text` and waits for the text frame that starts with `prefix`
/// (answering Engine.IO pings meanwhile).
async fn request(reader: &mut Reader, writer: &mut Writer, text: String, prefix: String) -> anyhow::Result<Vec<u8>> {
    writer.write_frame(Frame::text(Payload::Owned(text.into_bytes()))).await?;
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    loop {
        let frame = reader.read_frame(&mut ignore).await?;
        match frame.opcode {
            OpCode::Text if frame.payload.starts_with(prefix.as_bytes()) => return Ok(frame.payload.to_vec()),
            OpCode::Text if &frame.payload[..] == b"2" => {
                writer.write_frame(Frame::text(Payload::Borrowed(b"3"))).await?;
            }
            OpCode::Close => anyhow::bail!("closed while waiting for {prefix}"),
            _ => {}
        }
    }
}

fn urls(args: &Args) -> Vec<String> {
    let mut urls = vec![args.url.clone()];
    urls.extend(args.publish_url.clone());
    urls
}

fn quantiles(histogram: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.5)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "max_ms": ms(histogram.max()),
    })
}

pub async fn presence(args: &Args) -> anyhow::Result<Value> {
    let urls = urls(args);
    let started = Instant::now();
    let (tasks, _) = members(&urls, args.target, &args.channel, args.connections, args.concurrency).await?;
    let joined_in = started.elapsed();
    let mut askers = Vec::new();
    for url in &urls {
        askers.push(connection::connect(url, args.target, &[]).await?);
    }
    let mut presence = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut stats = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let until = Instant::now() + args.duration;
    let mut id = 0u64;
    while Instant::now() < until {
        id += 1;
        let which = id as usize % askers.len();
        let (reader, writer) = &mut askers[which];
        let channel = &args.channel;
        if args.target == Target::SocketIo {
            // An event with ack id `id`; the ack is `43<id>[[<socket>...]]`.
            let text = format!("42{id}[\"presence\",\"{channel}\"]");
            let sent = Instant::now();
            let reply = request(reader, writer, text, format!("43{id}")).await?;
            presence.record((sent.elapsed().as_micros() as u64).max(1))?;
            let reply: Value = serde_json::from_slice(&reply[2 + id.to_string().len()..])?;
            let listed = reply[0].as_array().map_or(0, Vec::len);
            anyhow::ensure!(listed == args.connections, "fetchSockets listed {listed} members");
            continue;
        }
        let is_stats = id.is_multiple_of(10);
        let command = if is_stats {
            format!("\"presence_stats\":{{\"channel\":\"{channel}\"}}")
        } else {
            format!("\"presence\":{{\"channel\":\"{channel}\"}}")
        };
        let sent = Instant::now();
        let reply = ask(reader, writer, id, &command).await?;
        let took = (sent.elapsed().as_micros() as u64).max(1);
        let reply: Value = serde_json::from_slice(&reply)?;
        if is_stats {
            let clients = reply["presence_stats"]["num_clients"].as_u64().unwrap_or(0);
            anyhow::ensure!(clients == args.connections as u64, "presence_stats counted {clients}: {reply}");
            stats.record(took)?;
        } else {
            let clients = reply["presence"]["clients"].as_object().map_or(0, |c| c.len());
            anyhow::ensure!(clients == args.connections, "presence listed {clients} members");
            presence.record(took)?;
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(json!({
        "scenario": "presence",
        "label": args.label,
        "target": format!("{:?}", args.target),
        "members": args.connections,
        "nodes": urls.len(),
        "joined_in_s": joined_in.as_secs_f64(),
        "presence": quantiles(&presence),
        "presence_stats": quantiles(&stats),
    }))
}

pub async fn join_leave(args: &Args) -> anyhow::Result<Value> {
    let urls = urls(args);
    let (tasks, events) =
        members(&urls, Target::SwitchyardJson, &args.channel, args.connections, args.concurrency).await?;
    // Every member gets its own join and those of members after it (more
    // where subscribes overlapped): wait until they stop coming.
    let members = args.connections as u64;
    let setup = members * (members + 1) / 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let now = events.load(Ordering::Relaxed);
        if now >= setup && now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before_events = events.load(Ordering::Relaxed);
    let before_broker = scrape::total(&args.scrape, "switchyard_broker_received_total").await?;
    let mut churners = Vec::new();
    for url in &urls {
        churners.push(connection::connect(url, Target::SwitchyardJson, &[]).await?);
    }
    let started = Instant::now();
    let cycles = args.rate;
    let channel = &args.channel;
    for cycle in 0..cycles {
        let (reader, writer) = &mut churners[cycle as usize % urls.len()];
        ask(reader, writer, 2 * cycle + 1, &format!("\"subscribe\":{{\"channel\":\"{channel}\"}}")).await?;
        ask(reader, writer, 2 * cycle + 2, &format!("\"unsubscribe\":{{\"channel\":\"{channel}\"}}")).await?;
    }
    // Each member gets one join and one leave per cycle.
    let expected = before_events + 2 * cycles * members;
    let deadline = Instant::now() + args.late_limit;
    while events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = events.load(Ordering::Relaxed) - before_events;
    let took = started.elapsed();
    let broker = scrape::total(&args.scrape, "switchyard_broker_received_total").await? - before_broker;
    for task in tasks {
        task.abort();
    }
    let events_sent = 2 * cycles;
    Ok(json!({
        "scenario": "join-leave",
        "label": args.label,
        "members": members,
        "nodes": urls.len(),
        "events": events_sent,
        "deliveries": delivered,
        "deliveries_expected": 2 * cycles * members,
        "seconds": took.as_secs_f64(),
        "broker_messages": broker,
        "broker_messages_per_event": broker / events_sent as f64,
        "broker_messages_per_event_per_node": broker / events_sent as f64 / urls.len() as f64,
    }))
}
