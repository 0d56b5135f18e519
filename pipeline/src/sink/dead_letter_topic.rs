//! The optional Kafka copy of dead letters (`dead_letter.kafka_topic`).
//!
//! The lake copy under `_weir/dead_letter/` is the exactly-once record: it is named by the
//! same ledger entry as the data. The Kafka copy is produced after the files are uploaded
//! and before that entry is created, and is **at least once**: if the process dies between
//! the two, the retried commit produces the letters again. Each message carries the
//! letter's origin as its key (`<topic>/<partition>/<offset>`) and in headers, so a consumer
//! can drop repeats (or a compacted topic keeps one).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::dead_letter::DeadLetter;
use crate::config::Config;

/// A producer to the configured dead-letter topic.
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterTopic {
    /// `None` when `dead_letter.kafka_topic` is not set.
    pub fn from_config(config: &Config) -> Result<Option<DeadLetterTopic>, String> {
        let Some(topic) = &config.dead_letter.kafka_topic else {
            return Ok(None);
        };
        let mut client = ClientConfig::new();
        // The connection settings (security, TLS, SASL) the consumer uses; the consumer-only
        // keys among them make librdkafka log a warning and are otherwise ignored.
        for (k, v) in &config.kafka.properties {
            if k.starts_with("security.")
                || k.starts_with("ssl.")
                || k.starts_with("sasl.")
                || k == "client.id"
            {
                client.set(k, v);
            }
        }
        client
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000");
        let producer: FutureProducer = client
            .create()
            .map_err(|e| format!("dead_letter.kafka_topic: creating the producer: {e}"))?;
        Ok(Some(DeadLetterTopic {
            producer,
            topic: topic.clone(),
        }))
    }

    /// Produces every letter and waits until the broker acknowledged all of them.
    pub async fn send(&self, dataset: &str, letters: &[DeadLetter]) -> Result<(), String> {
        let mut pending = Vec::with_capacity(letters.len());
        for l in letters {
            let key = format!("{}/{}/{}", l.topic, l.partition, l.offset);
            let partition = l.partition.to_string();
            let offset = l.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "weir.dataset",
                    value: Some(dataset),
                })
                .insert(Header {
                    key: "weir.topic",
                    value: Some(l.topic.as_str()),
                })
                .insert(Header {
                    key: "weir.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "weir.offset",
                    value: Some(offset.as_str()),
                })
                .insert(Header {
                    key: "weir.stage",
                    value: Some(l.stage.as_str()),
                })
                .insert(Header {
                    key: "weir.error_kind",
                    value: Some(l.error_kind.as_str()),
                })
                .insert(Header {
                    key: "weir.error",
                    value: Some(l.error.as_str()),
                });
            let mut record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(l.raw.as_slice())
                .headers(headers);
            if let Some(ts) = l.kafka_timestamp {
                record = record.timestamp(ts);
            }
            // Enqueue now (the future owns nothing borrowed); wait out a full local queue.
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((e, back))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err((e, _)) => return Err(format!("producing to {}: {e}", self.topic)),
                }
            };
            pending.push(delivery);
        }
        for (i, delivery) in futures::future::join_all(pending)
            .await
            .into_iter()
            .enumerate()
        {
            let letter = &letters[i];
            let failed = |e: String| {
                format!(
                    "producing dead letter {}/{}/{} to {}: {e}",
                    letter.topic, letter.partition, letter.offset, self.topic
                )
            };
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(failed(e.to_string())),
                Err(_) => return Err(failed("delivery report lost".to_owned())),
            }
        }
        Ok(())
    }
}
