//! `weir-mock-kafka`: hosts librdkafka's mock cluster in a process of its own, so that the
//! end-to-end tests talk to a Kafka-protocol broker over a real TCP socket on 127.0.0.1.
//!
//! ```text
//! weir-mock-kafka --brokers 1 --topic cf.http_requests:4 [--topic other:2]
//! ```
//!
//! Prints one line `bootstrap=<host:port>` on stdout once the topics exist, then reads
//! commands from stdin, one per line, answering each with `ok` or `error: ...`:
//!
//! - `down` / `up`: take every broker down or bring it back (a broker outage; the data
//!   survives, which is what a restarted real broker with durable logs looks like to a client)
//! - `topic NAME:PARTITIONS`: create another topic
//!
//! Exits when stdin closes. The mock keeps only the newest 5 MiB per partition: tests keep
//! their producers within that of what Weir has committed.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use rdkafka::mocking::MockCluster;

fn parse_topic(spec: &str) -> Result<(String, i32)> {
    let (name, parts) = spec
        .rsplit_once(':')
        .with_context(|| format!("topic spec {spec:?} is not NAME:PARTITIONS"))?;
    let parts: i32 = parts
        .parse()
        .with_context(|| format!("partition count in {spec:?}"))?;
    if name.is_empty() || parts < 1 {
        bail!("topic spec {spec:?} needs a name and at least one partition");
    }
    Ok((name.to_string(), parts))
}

fn main() -> Result<()> {
    let mut brokers = 1i32;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--brokers" => {
                brokers = args
                    .next()
                    .context("--brokers needs a value")?
                    .parse()
                    .context("--brokers")?
            }
            "--topic" => topics.push(parse_topic(&args.next().context("--topic needs a value")?)?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let cluster = MockCluster::new(brokers).context("starting the mock cluster")?;
    for (name, parts) in &topics {
        cluster
            .create_topic(name, *parts, 1)
            .with_context(|| format!("creating topic {name}"))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "bootstrap={}", cluster.bootstrap_servers())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let reply = match line.trim().split_once(' ').unwrap_or((line.trim(), "")) {
            ("down", _) => (1..=brokers)
                .try_for_each(|b| cluster.broker_down(b))
                .map_err(anyhow::Error::from),
            ("up", _) => (1..=brokers)
                .try_for_each(|b| cluster.broker_up(b))
                .map_err(anyhow::Error::from),
            ("topic", spec) => parse_topic(spec).and_then(|(name, parts)| {
                cluster
                    .create_topic(&name, parts, 1)
                    .map_err(anyhow::Error::from)
            }),
            ("", _) => continue,
            (other, _) => Err(anyhow::anyhow!("unknown command {other:?}")),
        };
        match reply {
            Ok(()) => writeln!(out, "ok")?,
            Err(e) => writeln!(out, "error: {e:#}")?,
        }
        out.flush()?;
    }
    Ok(())
}
