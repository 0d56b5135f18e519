//! The optional Kafka copy of dead letters (`dead_letter.kafka_topic`).
//!
//! The lake copy under `_weir/dead_letter/` is the exactly-once record: it is named by the
//! same ledger entry as the data. The Kafka copy is produced after the files are uploaded
//! and before that entry is created, and is **at least once**: if the process dies between
//! the two, the retried commit produces the letters again. Each message carries the
//! letter's origin as its key (`<topic>/<partition>/<offset>`) and in headers, so a consumer
//! can drop repeats (or a compacted topic keeps one).
//!
//! A message is at most `dead_letter.kafka_max_message_bytes`, headers included: a letter
//! that does not fit (a record refused for its size is the usual one) goes out with its
//! bytes and error text cut to fit and the headers `weir.raw_bytes` (the full length) and
//! `weir.truncated = "true"`. Sent whole, it would be refused by the producer or the broker
//! on every retry, and the partition's commit would wait on it for good.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::dead_letter::DeadLetter;
use crate::config::Config;

/// Bounds of `dead_letter.kafka_max_message_bytes`.
pub const MIN_MESSAGE: u64 = 16 << 10;
pub const MAX_MESSAGE: u64 = 256 << 20;
/// Room kept for the key, the headers and the record's framing when cutting a letter.
const ENVELOPE: usize = 8 << 10;
/// The longest `weir.error` header sent (error texts can quote a whole value).
const MAX_ERROR_HEADER: usize = 2 << 10;

/// A producer to the configured dead-letter topic.
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    /// The most bytes of a letter's value sent.
    max_value: usize,
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
        let max_message = config.dead_letter.kafka_max_message_bytes;
        client
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            // Room for one largest letter plus the batch framing around it.
            .set("message.max.bytes", (max_message + (64 << 10)).to_string());
        let producer: FutureProducer = client
            .create()
            .map_err(|e| format!("dead_letter.kafka_topic: creating the producer: {e}"))?;
        Ok(Some(DeadLetterTopic {
            producer,
            topic: topic.clone(),
            max_value: (max_message as usize).saturating_sub(ENVELOPE),
        }))
    }

    /// Produces every letter of the commit attempt (`seq`, `epoch`: the ledger entry it
    /// will be, if it commits) and waits until the broker acknowledged all of them.
    pub async fn send(
        &self,
        dataset: &str,
        (seq, epoch): (u64, u64),
        letters: &[DeadLetter],
    ) -> Result<(), String> {
        let mut pending = Vec::with_capacity(letters.len());
        let (seq, epoch) = (seq.to_string(), epoch.to_string());
        for l in letters {
            let key = format!("{}/{}/{}", l.topic, l.partition, l.offset);
            let partition = l.partition.to_string();
            let offset = l.offset.to_string();
            let truncated = l.raw.len() > self.max_value;
            let raw_bytes = l.raw.len().to_string();
            let value = &l.raw[..l.raw.len().min(self.max_value)];
            let mut headers = OwnedHeaders::new()
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
                    value: Some(cut(&l.error, MAX_ERROR_HEADER)),
                })
                .insert(Header {
                    key: "weir.ledger.seq",
                    value: Some(seq.as_str()),
                })
                .insert(Header {
                    key: "weir.ledger.epoch",
                    value: Some(epoch.as_str()),
                });
            let timestamp = l.kafka_timestamp.map(|t| t.to_string());
            if let Some(t) = &timestamp {
                headers = headers.insert(Header {
                    key: "weir.kafka_timestamp",
                    value: Some(t.as_str()),
                });
            }
            if truncated {
                headers = headers
                    .insert(Header {
                        key: "weir.raw_bytes",
                        value: Some(raw_bytes.as_str()),
                    })
                    .insert(Header {
                        key: "weir.truncated",
                        value: Some("true"),
                    });
            }
            // Stamped when produced, not with the record's own time: the topic's time-based
            // retention (and a broker's bound on old timestamps) then count from now, where
            // a backlog's old times would have the letters deleted, or refused, at once.
            let mut record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(value)
                .headers(headers);
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
                Ok(Err((e, _)))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge) =>
                {
                    return Err(failed(format!(
                        "{e}: the topic's max.message.bytes is below dead_letter.kafka_max_message_bytes; lower that key to the topic's limit"
                    )));
                }
                Ok(Err((e, _))) => return Err(failed(e.to_string())),
                Err(_) => return Err(failed("delivery report lost".to_owned())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 4), "abcd");
        // "é" is two bytes: a cut inside it steps back before it.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
    }
}
