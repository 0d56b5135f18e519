//! `weir backfill`: archive imports that survive kill -9 and re-runs, shards whose union is
//! the unsharded run, and Kafka re-derivations that refuse to start when the broker no
//! longer holds the records.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_schemas::synth::{HttpRequests, ray_id_hex};

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{FaultProxy, MockKafka, World, flush, producer, send};

/// 2026-11-01T00:00:00Z in nanoseconds.
const DAY_START_NS: i64 = 1_793_491_200_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;
/// Archive files: 15-minute windows from 00:00 to 02:45 and one from 02:50 to 03:10 (its
/// rows from 03:00 are outside the range); the backfill asks for [00, 03).
const FILES: i64 = 12;
const PER_FILE: usize = 150;
/// The line of the second file that is not JSON.
const BAD_LINE: i64 = 5;

struct Archive {
    /// Ids of the rows whose event time is inside [00:00, 03:00).
    in_range: Vec<String>,
    outside: usize,
    /// Name (under the archive prefix) of the file with the bad line.
    bad_file: String,
}

/// Writes the archive (gzip NDJSON, Logpush layout) under `s3 root/weir/archive/`, plus a
/// file of the day before whose window is outside the range (never read: no id of it may
/// land).
fn write_archive(world: &World) -> Archive {
    let root = world.s3.lake_dir("archive");
    let mut generator = HttpRequests::new(77).compact(true);
    let mut in_range = Vec::new();
    let mut outside = 0;
    let mut bad_file = String::new();
    let mut buf = Vec::new();
    let mut write_file =
        |start_ns: i64, minutes: i64, rows: usize, bad: bool, ids: &mut Vec<(String, i64)>| {
            let start = chrono::DateTime::from_timestamp_nanos(start_ns);
            let end = chrono::DateTime::from_timestamp_nanos(start_ns + minutes * MINUTE_NS);
            let dir = root.join(start.format("%Y%m%d").to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!(
                "{}_{}_{:08x}.log.gz",
                start.format("%Y%m%dT%H%M%SZ"),
                end.format("%Y%m%dT%H%M%SZ"),
                start_ns / MINUTE_NS
            );
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for i in 0..rows {
                if bad && i as i64 == BAD_LINE - 1 {
                    gz.write_all(b"{\"RayID\": \"not closed\n").unwrap();
                }
                let t = start_ns + (i as i64 * minutes * MINUTE_NS) / rows as i64;
                generator.set_event_time(t);
                buf.clear();
                let meta = generator.write_record(&mut buf);
                gz.write_all(&buf).unwrap();
                gz.write_all(b"\n").unwrap();
                ids.push((ray_id_hex(meta.id), t));
            }
            std::fs::write(dir.join(&name), gz.finish().unwrap()).unwrap();
            format!("{}/{name}", start.format("%Y%m%d"))
        };
    let mut all = Vec::new();
    for f in 0..FILES {
        let name = write_file(
            DAY_START_NS + f * 15 * MINUTE_NS,
            15,
            PER_FILE,
            f == 1,
            &mut all,
        );
        if f == 1 {
            bad_file = name;
        }
    }
    write_file(
        DAY_START_NS + 170 * MINUTE_NS,
        20,
        PER_FILE,
        false,
        &mut all,
    );
    let mut never = Vec::new();
    write_file(
        DAY_START_NS - 24 * 60 * MINUTE_NS,
        15,
        50,
        false,
        &mut never,
    );
    for (id, t) in all {
        if t < DAY_START_NS + 3 * 60 * MINUTE_NS {
            in_range.push(id);
        } else {
            outside += 1;
        }
    }
    Archive {
        in_range,
        outside,
        bad_file: format!("s3://weir/archive/{bad_file}"),
    }
}

fn config(world: &World) -> PathBuf {
    // No broker is needed for an archive backfill.
    world.config("weir.toml", "127.0.0.1:9", &dataset_toml(""))
}

fn backfill(
    world: &World,
    config: &Path,
    extra: &[&str],
    log: &str,
    env: &[(&str, &str)],
) -> std::process::ExitStatus {
    let mut args = vec![
        "--dataset",
        "http_requests",
        "--from",
        "2026-11-01T00",
        "--to",
        "2026-11-01T03:00:00Z",
    ];
    args.extend_from_slice(extra);
    let mut job = world.weir_job("backfill", config, &args, log, env);
    job.wait_timeout(Duration::from_secs(300))
        .unwrap_or_else(|| panic!("weir backfill did not finish\n{}", world.log(log)))
}

fn source(world: &World) -> String {
    let _ = world;
    "s3://weir/archive".to_owned()
}

#[test]
fn an_archive_backfill_survives_kill_9_and_a_rerun_then_does_nothing() {
    let world = World::new();
    let archive = write_archive(&world);
    let config = config(&world);
    let src = source(&world);
    // Killed after the 4th unit's files are uploaded, before its entry.
    let status = backfill(
        &world,
        &config,
        &["--source", &src],
        "run-1.log",
        &[("WEIR_FAILPOINT", "after-upload:4")],
    );
    assert!(
        !status.success(),
        "the failpoint did not fire\n{}",
        world.log("run-1.log")
    );
    let status = backfill(&world, &config, &["--source", &src], "run-2.log", &[]);
    assert!(status.success(), "{}", world.log("run-2.log"));
    let log = world.log("run-2.log");
    assert!(
        log.contains("units (3 already done)"),
        "the re-run did not continue where the ledger stopped:\n{log}"
    );
    assert!(
        log.contains(&format!("{} outside the range", archive.outside)),
        "rows outside [from, to) not counted as skipped:\n{log}"
    );
    world.assert_exactly_once(&config, &archive.in_range);
    let delta = crate::delta::read_delta(&world.lake_dir().join("http_requests"));
    assert_eq!(
        delta.counts.len(),
        archive.in_range.len(),
        "delta table rows"
    );
    assert!(
        delta.counts.values().all(|n| *n == 1),
        "a row twice in delta"
    );
    // The bad line is a dead letter naming its file and line.
    let dead = world.query(
        &config,
        "SELECT topic, \"offset\", error_kind FROM dead_letter",
    );
    assert_eq!(
        dead,
        vec![format!("{},{BAD_LINE},invalid_json", archive.bad_file)],
        "dead letters"
    );
    // A third run is a no-op that says so.
    let status = backfill(&world, &config, &["--source", &src], "run-3.log", &[]);
    assert!(status.success(), "{}", world.log("run-3.log"));
    assert!(
        world.log("run-3.log").contains("nothing to do"),
        "{}",
        world.log("run-3.log")
    );
    world.assert_exactly_once(&config, &archive.in_range);
    // A dry run lists the plan and changes nothing.
    let status = backfill(
        &world,
        &config,
        &["--source", &src, "--dry-run", "--id", "other"],
        "dry.log",
        &[],
    );
    assert!(status.success(), "{}", world.log("dry.log"));
    let dry = world.log("dry.log");
    assert!(dry.contains("13 units to do"), "{dry}");
    assert!(
        !dry.contains("20261031"),
        "a file outside the window was planned:\n{dry}"
    );
    world.assert_exactly_once(&config, &archive.in_range);
}

#[test]
fn three_shards_give_exactly_the_unsharded_result() {
    let sql = "SELECT \"RayID\", \"EdgeStartTimestamp\", \"ClientIP\", \"ClientRequestPath\", date, hour FROM http_requests ORDER BY 1";
    let one = World::new();
    let archive = write_archive(&one);
    let config_one = config(&one);
    let status = backfill(
        &one,
        &config_one,
        &["--source", &source(&one)],
        "one.log",
        &[],
    );
    assert!(status.success(), "{}", one.log("one.log"));

    let three = World::new();
    write_archive(&three);
    let config_three = config(&three);
    let src = source(&three);
    let mut jobs: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            let args = [
                "--dataset",
                "http_requests",
                "--from",
                "2026-11-01T00",
                "--to",
                "2026-11-01T03",
                "--source",
                &src,
                "--shard",
                &shard,
            ];
            three.weir_job(
                "backfill",
                &config_three,
                &args,
                &format!("shard-{i}.log"),
                &[],
            )
        })
        .collect();
    for (i, job) in jobs.iter_mut().enumerate() {
        let status = job
            .wait_timeout(Duration::from_secs(300))
            .expect("shard finished");
        assert!(status.success(), "{}", three.log(&format!("shard-{i}.log")));
    }
    let a = one.query(&config_one, sql);
    let b = three.query(&config_three, sql);
    assert_eq!(a.len(), archive.in_range.len());
    assert!(a == b, "three shards differ from one run");
    three.assert_exactly_once(&config_three, &archive.in_range);
    assert_eq!(
        one.query(&config_one, "SELECT count(*) FROM dead_letter"),
        three.query(&config_three, "SELECT count(*) FROM dead_letter")
    );
}

#[test]
fn a_kafka_backfill_whose_offsets_were_deleted_stops_before_writing() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(""));
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let p = producer(&kafka.bootstrap);
    let mut generator = HttpRequests::new(5).compact(true);
    let mut buf = Vec::new();
    // 300 records of 2026-11-01T05, then enough of another hour to push them out of the
    // mock broker's 5 MiB.
    let hour5 = DAY_START_NS + 5 * 60 * MINUTE_NS;
    for i in 0..300 {
        generator.set_event_time(hour5 + i * 1_000_000_000);
        buf.clear();
        generator.write_record(&mut buf);
        send(&p, TOPIC, 0, &buf);
    }
    flush(&p);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[300],
        Duration::from_secs(120),
        &mut weir,
    );
    let filler = vec![b'x'; 60_000];
    let hour9 = DAY_START_NS + 9 * 60 * MINUTE_NS;
    let mut sent = 300i64;
    for i in 0..150 {
        generator.set_event_time(hour9 + i * 1_000_000_000);
        buf.clear();
        generator.write_record(&mut buf);
        // Padding the decoder ignores would change the record; instead big records are
        // dead letters (over max_record_bytes): they still fill the broker's log.
        let mut big = buf.clone();
        big.extend_from_slice(&filler);
        send(&p, TOPIC, 0, &big);
        sent += 1;
    }
    flush(&p);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[sent],
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();
    let args = [
        "--dataset",
        "http_requests",
        "--from",
        "2026-11-01T05",
        "--to",
        "2026-11-01T06",
        "--source",
        "kafka",
        "--replace",
    ];
    let mut job = world.weir_job("backfill", &config, &args, "backfill.log", &[]);
    let status = job
        .wait_timeout(Duration::from_secs(120))
        .expect("backfill finished");
    let log = world.log("backfill.log");
    assert!(
        !status.success(),
        "a backfill of deleted offsets succeeded:\n{log}"
    );
    assert!(
        log.contains("no longer retained")
            && log.contains("date=2026-11-01/hour=05")
            && log.contains(&format!("{TOPIC}/0 offsets 0..")),
        "the error does not name the hour and offsets:\n{log}"
    );
    // Nothing was written: no stream of the backfill exists.
    let streams = world
        .s3
        .lake_dir(&format!("{}/_weir/streams/http_requests", world.prefix));
    let names: Vec<String> = std::fs::read_dir(&streams)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with('@')),
        "the backfill created a stream: {names:?}"
    );
}

#[test]
fn a_replace_from_kafka_swaps_whole_hours_and_readers_never_see_a_mixture() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 2)]);
    let lookup = world.path("zones.csv");
    std::fs::write(&lookup, "ZoneName,team\na.example,alpha\n").unwrap();
    let ops = format!(
        "[[datasets.operators]]\ntype = \"enrich\"\n[[datasets.operators.lookup]]\npath = \"{}\"\nkey = [\"ZoneName\"]\ncolumns = [\"team\"]\n",
        lookup.display()
    );
    let config = world.config("weir.toml", &kafka.bootstrap, &dataset_toml(&ops));
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let p = producer(&kafka.bootstrap);
    let mut generator = HttpRequests::new(11).compact(true);
    let mut buf = Vec::new();
    let mut ids = Vec::new();
    let hour5 = DAY_START_NS + 5 * 60 * MINUTE_NS;
    // Two waves, so each partition commits several entries; hours 05 and 06.
    let mut counts = [0i64; 2];
    for wave in 0..2 {
        for i in 0..400i64 {
            let t = hour5 + (wave * 400 + i) * 8 * 1_000_000_000;
            generator.set_event_time(t);
            buf.clear();
            let meta = generator.write_record(&mut buf);
            let mut v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            v["ZoneName"] = "a.example".into();
            let part = (i % 2) as usize;
            send(&p, TOPIC, part as i32, &serde_json::to_vec(&v).unwrap());
            counts[part] += 1;
            if t < hour5 + 60 * MINUTE_NS {
                ids.push(ray_id_hex(meta.id));
            }
        }
        flush(&p);
        world.wait_consumed(
            "http_requests",
            TOPIC,
            &counts,
            Duration::from_secs(120),
            &mut weir,
        );
    }
    weir.terminate();
    let in_hour5 = ids.len();
    let total = counts.iter().sum::<i64>() as usize;
    assert!(in_hour5 > 0 && in_hour5 < total);
    let hour5_sql = "SELECT team, count(*) FROM http_requests WHERE date = '2026-11-01' AND hour = 5 GROUP BY team";
    assert_eq!(
        world.query(&config, hour5_sql),
        vec![format!("alpha,{in_hour5}")]
    );

    // A new reference file, then the replace, with a reader querying throughout.
    std::fs::write(&lookup, "ZoneName,team\na.example,gamma\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = world.query(&config, hour5_sql);
                assert!(
                    rows == vec![format!("alpha,{in_hour5}")]
                        || rows == vec![format!("gamma,{in_hour5}")],
                    "a reader saw {rows:?} during the replace"
                );
                seen.insert(rows[0].clone());
            }
            seen
        });
        let args = [
            "--dataset",
            "http_requests",
            "--from",
            "2026-11-01T05",
            "--to",
            "2026-11-01T06",
            "--replace",
        ];
        let mut job = world.weir_job("backfill", &config, &args, "replace.log", &[]);
        let status = job
            .wait_timeout(Duration::from_secs(300))
            .expect("backfill finished");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(status.success(), "{}", world.log("replace.log"));
        reader.join().unwrap()
    });
    assert!(seen.contains(&format!("alpha,{in_hour5}")), "{seen:?}");
    assert_eq!(
        world.query(&config, hour5_sql),
        vec![format!("gamma,{in_hour5}")]
    );
    let log = world.log("replace.log");
    assert!(log.contains("published"), "{log}");
    // The Delta table, published when the backfill finished, holds every row once.
    let delta = crate::delta::read_delta(&world.lake_dir().join("http_requests"));
    assert_eq!(delta.counts.len(), total, "delta table rows");
    assert!(
        delta.counts.values().all(|n| *n == 1),
        "a row twice in delta"
    );
    // Hour 06 was not touched.
    assert_eq!(
        world.query(
            &config,
            "SELECT team, count(*) FROM http_requests WHERE hour = 6 GROUP BY team"
        ),
        vec![format!("alpha,{}", total - in_hour5)]
    );
    // Every row once, through the ledger and (after vacuum) in the plain folders.
    let status = world
        .weir_job("vacuum", &config, &["--grace", "0s"], "vacuum.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("vacuum finished");
    assert!(status.success(), "{}", world.log("vacuum.log"));
    let all: Vec<String> = world
        .query(&config, "SELECT \"RayID\" FROM http_requests")
        .into_iter()
        .collect();
    assert_eq!(all.len(), total);
    let hour5_ids = world.query(
        &config,
        "SELECT \"RayID\" FROM http_requests WHERE hour = 5 ORDER BY 1",
    );
    let mut want = ids.clone();
    want.sort();
    assert_eq!(hour5_ids, want);
    let rerun = world
        .weir_job("backfill", &config, &args_rerun(), "rerun.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("rerun finished");
    assert!(rerun.success(), "{}", world.log("rerun.log"));
    assert!(
        world.log("rerun.log").contains("already published"),
        "{}",
        world.log("rerun.log")
    );
    let pyarrow_total = world.duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/http_requests/*/*/*.parquet', hive_partitioning = true) WHERE hour = 5",
        world.s3.lake_dir(&world.prefix).display()
    ));
    assert_eq!(
        pyarrow_total,
        vec![in_hour5.to_string()],
        "plain folders after vacuum"
    );

    // A schema that places records by another field: re-derived, a record could land in
    // another hour than the row it replaces. Refused before anything is written.
    let schema = world.path("http_requests_by_end.json");
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/datasets/http_requests.json"),
    )
    .unwrap();
    let moved = builtin.replacen(
        "\"event_time\": \"EdgeStartTimestamp\"",
        "\"event_time\": \"EdgeEndTimestamp\"",
        1,
    );
    assert_ne!(moved, builtin);
    std::fs::write(&schema, moved).unwrap();
    let by_end = world.config(
        "by-end.toml",
        &kafka.bootstrap,
        &dataset_toml(&ops).replace(
            "schema = \"http_requests\"",
            &format!("schema = \"{}\"", schema.display()),
        ),
    );
    let mut args = args_rerun();
    args.extend(["--id", "by-end"]);
    let status = world
        .weir_job("backfill", &by_end, &args, "by-end.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("backfill finished");
    let log = world.log("by-end.log");
    assert!(
        !status.success()
            && log.contains("EdgeStartTimestamp timestamp")
            && log.contains("EdgeEndTimestamp timestamp"),
        "{log}"
    );
    assert_eq!(
        world.query(
            &config,
            "SELECT count(*) FROM commits WHERE topic LIKE '@staged.by-end%'"
        ),
        vec!["0"]
    );
    assert_eq!(
        world.query(&config, "SELECT count(*) FROM http_requests WHERE hour = 5"),
        vec![in_hour5.to_string()]
    );
}

/// A Kafka `--replace` backfill after the config changed which records decode. Records the
/// dead letters already hold stay there only, although they decode now (not also in the
/// table); records that had a row and no longer decode go to the dead letters (not lost);
/// a unit whose entry also wrote an hour outside the range stops rather than guess; a
/// backfill whose staged dead letters another backfill published meanwhile does not
/// publish them again. Every record ends in exactly one place, checked by RayID and by
/// offset after each step.
#[test]
fn a_replace_from_kafka_after_a_config_change_keeps_each_record_in_one_place() {
    let world = World::new();
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let with_limit = |name: &str, limit: &str| {
        let datasets = dataset_toml("").replace(
            "max_record_bytes = \"64KiB\"",
            &format!("max_record_bytes = \"{limit}\""),
        );
        world.config(name, &kafka.bootstrap, &datasets)
    };
    let config = with_limit("weir.toml", "8KiB");
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    let p = producer(&kafka.bootstrap);
    let mut generator = HttpRequests::new(21).compact(true);
    let mut buf = Vec::new();
    let hour5 = DAY_START_NS + 5 * 60 * MINUTE_NS;
    const N: i64 = 600;
    // (offset, RayID, size kind, in hour 06). Even offsets fall in hour 05, odd ones in
    // hour 06, so every entry of more than one record wrote both hours. Size kinds: 0
    // ~2 KB; 1 ~5 KB (fits 8 KiB, not 4 KiB); 2 ~10 KB (refused at 8 KiB); kinds 1 and 2 in
    // both hours.
    let mut sent = Vec::new();
    for i in 0..N {
        let six = i % 2 == 1;
        let t = hour5 + if six { 60 * MINUTE_NS } else { 0 } + (i / 2) * 12 * 1_000_000_000;
        generator.set_event_time(t);
        buf.clear();
        let meta = generator.write_record(&mut buf);
        let mut v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let kind = match i % 10 {
            3 | 4 => 1,
            7 | 8 => 2,
            _ => 0,
        };
        if kind > 0 {
            v["ClientRequestUserAgent"] = "m".repeat(if kind == 1 { 5000 } else { 10000 }).into();
        }
        send(&p, TOPIC, 0, &serde_json::to_vec(&v).unwrap());
        sent.push((i, ray_id_hex(meta.id), kind, six));
        // In two commits at least, so that compaction has dead-letter files to merge.
        if i == N / 2 - 1 {
            flush(&p);
            world.wait_consumed(
                "http_requests",
                TOPIC,
                &[N / 2],
                Duration::from_secs(120),
                &mut weir,
            );
        }
    }
    flush(&p);
    world.wait_consumed(
        "http_requests",
        TOPIC,
        &[N],
        Duration::from_secs(120),
        &mut weir,
    );
    weir.terminate();
    let count = |sql: &str| world.query(&config, sql)[0].parse::<i64>().unwrap();
    assert_eq!(count("SELECT count(*) FROM dead_letter"), N / 5);

    // Where every record must be: RayIDs in the table, offsets in the dead letters.
    let check = |table: Vec<&str>, dead: Vec<i64>| {
        let mut got = world.query(&config, "SELECT \"RayID\" FROM http_requests ORDER BY 1");
        let mut want: Vec<String> = table.into_iter().map(str::to_owned).collect();
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "table rows");
        assert_eq!(got, want, "table");
        let got: Vec<i64> = world
            .query(&config, "SELECT \"offset\" FROM dead_letter ORDER BY 1")
            .iter()
            .map(|o| o.parse().unwrap())
            .collect();
        let mut want = dead;
        want.sort();
        assert_eq!(got, want, "dead letters");
    };
    let ids = |f: &dyn Fn(i64, bool) -> bool| -> Vec<&str> {
        sent.iter()
            .filter(|(_, _, k, six)| f(*k, *six))
            .map(|(_, id, _, _)| id.as_str())
            .collect()
    };
    let offsets = |f: &dyn Fn(i64, bool) -> bool| -> Vec<i64> {
        sent.iter()
            .filter(|(_, _, k, six)| f(*k, *six))
            .map(|(o, _, _, _)| *o)
            .collect()
    };
    check(ids(&|k, _| k < 2), offsets(&|k, _| k == 2));
    // The dead letters merged first: the backfills below find them through the spans the
    // merged files carry in the ledger.
    let status = world
        .weir_job("compact", &config, &["--min-age", "0s"], "compact.log", &[])
        .wait_timeout(Duration::from_secs(240))
        .expect("compaction finished");
    assert!(status.success(), "{}", world.log("compact.log"));
    assert_ne!(
        world.query(
            &config,
            "SELECT count(*) FROM commits WHERE kind = 'replace' AND removed_files > 0 AND removed_rows = 0",
        ),
        vec!["0".to_owned()],
        "dead letters were merged\n{}",
        world.log("compact.log")
    );
    check(ids(&|k, _| k < 2), offsets(&|k, _| k == 2));

    let run =
        |config: &Path, from: &str, to: &str, log: &str, id: &[&str], env: &[(&str, &str)]| {
            let mut args = vec![
                "--dataset",
                "http_requests",
                "--from",
                from,
                "--to",
                to,
                "--replace",
            ];
            args.extend_from_slice(id);
            world
                .weir_job("backfill", config, &args, log, env)
                .wait_timeout(Duration::from_secs(300))
                .expect("backfill finished")
        };
    // 1. A larger limit: the 10 KB records decode now, and stay dead letters only.
    let larger = with_limit("larger.toml", "64KiB");
    let status = run(
        &larger,
        "2026-11-01T05",
        "2026-11-01T06",
        "larger.log",
        &[],
        &[],
    );
    assert!(status.success(), "{}", world.log("larger.log"));
    let log = world.log("larger.log");
    let kept: u64 = log
        .split(" records already in the dead letters")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line\n{log}"));
    assert!(kept > 0, "{log}");
    check(ids(&|k, _| k < 2), offsets(&|k, _| k == 2));

    // 2. A smaller limit, hour 06 alone: its entries also wrote hour 05, which stays, so
    // the 5 KB records refused now cannot be placed. Nothing changes.
    let smaller = with_limit("smaller.toml", "4KiB");
    let status = run(
        &smaller,
        "2026-11-01T06",
        "2026-11-01T07",
        "smaller-06.log",
        &[],
        &[],
    );
    assert!(!status.success(), "{}", world.log("smaller-06.log"));
    let log = world.log("smaller-06.log");
    assert!(
        log.contains("no longer decode") && log.contains("hour=05"),
        "{log}"
    );
    check(ids(&|k, _| k < 2), offsets(&|k, _| k == 2));

    // 3. Both hours: the 5 KB records move to the dead letters, each once. First a
    // backfill under its own id is killed after staging every unit (the failpoint fires
    // after its last unit's entry, before the publish), then another id does the same
    // work and publishes.
    let units = world.query(
        &smaller,
        &format!(
            "SELECT count(*) FROM commits WHERE kind = 'append' AND topic = '{TOPIC}' AND files > 0"
        ),
    )[0]
    .clone();
    let first = ["--id", "first"];
    let failpoint = format!("after-ledger:{units}");
    let killed = run(
        &smaller,
        "2026-11-01T05",
        "2026-11-01T07",
        "first.log",
        &first,
        &[("WEIR_FAILPOINT", &failpoint)],
    );
    assert!(
        !killed.success(),
        "the failpoint did not fire\n{}",
        world.log("first.log")
    );
    let staged = world.query(
        &smaller,
        "SELECT sum(dead_letters) FROM commits WHERE topic = '@staged.first'",
    );
    assert_eq!(
        staged,
        vec![(N / 5).to_string()],
        "the killed backfill staged every 5 KB record"
    );
    check(ids(&|k, _| k < 2), offsets(&|k, _| k == 2));
    let status = run(
        &smaller,
        "2026-11-01T05",
        "2026-11-01T07",
        "smaller.log",
        &[],
        &[],
    );
    assert!(status.success(), "{}", world.log("smaller.log"));
    check(ids(&|k, _| k == 0), offsets(&|k, _| k > 0));

    // 4. The killed id, run again, would publish the same dead letters a second time: it
    // refuses, and nothing changes.
    let again = run(
        &smaller,
        "2026-11-01T05",
        "2026-11-01T07",
        "first-again.log",
        &first,
        &[],
    );
    let log = world.log("first-again.log");
    assert!(!again.success() && log.contains("already hold"), "{log}");
    check(ids(&|k, _| k == 0), offsets(&|k, _| k > 0));
}

/// A `--replace` backfill killed before it published is given up with `--abandon`: its
/// staged files (dead letters included), which vacuum keeps while the backfill may still
/// finish, are deleted by the next vacuum; the id can neither run nor publish again; the
/// table never changes. A published or non-replace backfill cannot be abandoned.
#[test]
fn an_abandoned_replace_backfill_leaves_nothing_behind() {
    let world = World::new();
    let archive = write_archive(&world);
    let config = config(&world);
    let src = source(&world);
    let status = backfill(
        &world,
        &config,
        &["--source", &src, "--id", "base"],
        "base.log",
        &[],
    );
    assert!(status.success(), "{}", world.log("base.log"));
    world.assert_exactly_once(&config, &archive.in_range);
    let dead = "SELECT count(*) FROM dead_letter";
    assert_eq!(world.query(&config, dead), vec!["1"]);

    // Killed after its 6th unit (the bad line's file among them) is staged, before the
    // publish.
    let junk = ["--source", src.as_str(), "--replace", "--id", "junk"];
    let status = backfill(
        &world,
        &config,
        &junk,
        "junk.log",
        &[("WEIR_FAILPOINT", "after-ledger:6")],
    );
    assert!(!status.success(), "{}", world.log("junk.log"));
    let staged = |world: &World| -> (usize, usize) {
        let files: Vec<String> = crate::compaction::walk(&world.lake_dir())
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.contains("staged.junk-"))
            .collect();
        let dead = files
            .iter()
            .filter(|p| p.contains("_weir/dead_letter/"))
            .count();
        (files.len() - dead, dead)
    };
    let (data, dead_files) = staged(&world);
    assert!(
        data >= 6 && dead_files == 1,
        "staged: {data} data files, {dead_files} dead-letter files"
    );
    let vacuum = |log: &str| {
        let status = world
            .weir_job("vacuum", &config, &["--grace", "0s"], log, &[])
            .wait_timeout(Duration::from_secs(240))
            .expect("vacuum finished");
        assert!(status.success(), "{}", world.log(log));
    };
    // While it may still be finished, vacuum keeps what it staged.
    vacuum("vacuum-1.log");
    assert_eq!(staged(&world), (data, dead_files));

    let abandon = |id: &str, log: &str| {
        world
            .weir_job(
                "backfill",
                &config,
                &["--dataset", "http_requests", "--id", id, "--abandon"],
                log,
                &[],
            )
            .wait_timeout(Duration::from_secs(120))
            .expect("abandon finished")
    };
    let status = abandon("junk", "abandon.log");
    let log = world.log("abandon.log");
    assert!(status.success(), "{log}");
    assert!(
        log.contains("backfill junk abandoned: 6 staged units"),
        "{log}"
    );
    let status = abandon("junk", "abandon-again.log");
    let log = world.log("abandon-again.log");
    assert!(
        status.success() && log.contains("already abandoned"),
        "{log}"
    );
    // The id cannot run again (which would publish it).
    let status = backfill(&world, &config, &junk, "junk-again.log", &[]);
    let log = world.log("junk-again.log");
    assert!(!status.success() && log.contains("was abandoned"), "{log}");

    vacuum("vacuum-2.log");
    let left: Vec<String> = crate::compaction::walk(&world.lake_dir())
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains("staged.junk-"))
        .collect();
    assert!(
        left.is_empty(),
        "vacuum left {left:?}\n{}",
        world
            .log("vacuum-2.log")
            .lines()
            .filter(|l| l.contains("vacuum") || l.contains("deleted") || l.contains("kept"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    world.assert_exactly_once(&config, &archive.in_range);
    assert_eq!(world.query(&config, dead), vec!["1"]);
    assert_eq!(
        world.query(
            &config,
            "SELECT count(*), sum(removed_files) FROM commits WHERE kind = 'abandon'"
        ),
        vec!["1,0"]
    );
    assert_eq!(
        world.query(
            &config,
            "SELECT sum(rows) - sum(removed_rows) FROM commits WHERE kind <> 'staged'"
        ),
        vec![archive.in_range.len().to_string()]
    );

    // Neither an id that was never planned, nor one that adds rows, nor a published one.
    let status = abandon("never", "abandon-never.log");
    let log = world.log("abandon-never.log");
    assert!(
        !status.success() && log.contains("nothing to abandon"),
        "{log}"
    );
    let status = abandon("base", "abandon-base.log");
    let log = world.log("abandon-base.log");
    assert!(
        !status.success() && log.contains("planned without --replace"),
        "{log}"
    );
    let full = ["--source", src.as_str(), "--replace", "--id", "full"];
    let status = backfill(&world, &config, &full, "full.log", &[]);
    assert!(status.success(), "{}", world.log("full.log"));
    let status = abandon("full", "abandon-full.log");
    let log = world.log("abandon-full.log");
    assert!(!status.success() && log.contains("is published"), "{log}");
    // Plain-folder readers see the replaced files until vacuum deletes them.
    vacuum("vacuum-3.log");
    world.assert_exactly_once(&config, &archive.in_range);
}

fn args_rerun() -> Vec<&'static str> {
    vec![
        "--dataset",
        "http_requests",
        "--from",
        "2026-11-01T05",
        "--to",
        "2026-11-01T06",
        "--replace",
    ]
}

/// Store faults (refused calls, lost answers, timeouts; seeded): a run may fail, a re-run
/// continues, and every record lands once in the end.
#[test]
fn an_archive_backfill_through_store_faults_lands_every_record_once() {
    let world = World::new();
    let archive = write_archive(&world);
    let config = config(&world);
    let src = source(&world);
    let seed: u64 = std::env::var("WEIR_BACKFILL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let mut succeeded = false;
    let mut injected = 0;
    for run in 0..12u64 {
        let faults = format!("rate=0.2,seed={},delay=300ms", seed + run);
        let log = format!("faults-{run}.log");
        let status = backfill(
            &world,
            &config,
            &["--source", &src],
            &log,
            &[("WEIR_STORE_FAULTS", faults.as_str())],
        );
        injected += world.log(&log).matches("injected fault").count();
        if status.success() {
            succeeded = true;
            break;
        }
        assert!(
            world.log(&log).contains("injected fault"),
            "a run failed without an injected fault:\n{}",
            world.log(&log)
        );
    }
    assert!(succeeded, "no run finished in 12 tries");
    assert!(
        injected > 0,
        "no fault was injected: the test tested nothing"
    );
    world.assert_exactly_once(&config, &archive.in_range);
    assert_eq!(
        world.query(&config, "SELECT count(*) FROM dead_letter"),
        vec!["1"]
    );
}

/// Every archive file's download cut off half way (the proxy sends half of the body and
/// closes the connection), and one file's ranged resumes cut too, each bringing half of what
/// is left: more cuts than the store client resumes, so Weir resumes that file itself. The
/// backfill succeeds in one run, and every record lands once (a line lost or read twice at
/// a cut would show as a missing or repeated id, or as a gzip stream that does not
/// decompress).
#[test]
fn archive_downloads_cut_off_part_way_resume_and_land_every_record_once() {
    let world = World::new();
    let archive = write_archive(&world);
    let proxy = FaultProxy::start(
        world.s3.server_port,
        3,
        &[
            r"GET|^/weir/archive/20261101/20261101T000000Z_.*\.log\.gz$|1.0|cutall",
            r"GET|^/weir/archive/.*\.log\.gz$|1.0|cut",
        ],
        world.path("cut-proxy.log"),
    );
    let config = world.config_at(
        "weir-cut.toml",
        "127.0.0.1:9",
        &proxy.endpoint(),
        "",
        &dataset_toml(""),
    );
    let status = backfill(
        &world,
        &config,
        &["--source", &source(&world)],
        "cut.log",
        &[],
    );
    assert!(
        status.success(),
        "backfill failed:\n{}",
        world.log("cut.log")
    );
    let faults = proxy.faults();
    let first = |line: &&String| line.contains("/20261101T000000Z_");
    let cut_once = faults
        .iter()
        .filter(|line| line.starts_with("cut GET") && !first(line))
        .count();
    // Every file whose window meets the range is read: FILES, plus the one at 02:50.
    assert_eq!(
        cut_once, FILES as usize,
        "each other archive file in the range is cut once: {faults:?}"
    );
    let cuts_of_first = faults.iter().filter(first).count();
    assert!(
        cuts_of_first > 4,
        "the first file is cut more often than the store client resumes: {faults:?}"
    );
    let log = world.log("cut.log");
    assert!(
        log.contains("archive download cut off part way, asking for the rest")
            && log.contains("20261101T000000Z_"),
        "weir resumed the first file itself:\n{log}"
    );
    world.assert_exactly_once(&config, &archive.in_range);
    assert_eq!(
        world.query(&config, "SELECT count(*) FROM dead_letter"),
        vec!["1"]
    );
}

/// Two runs of the same shard at once (a replacement pod while the old one still runs):
/// each unit lands once; and a run under the same id with another range is refused.
#[test]
fn two_runs_of_one_shard_at_once_land_each_unit_once() {
    let world = World::new();
    let archive = write_archive(&world);
    let config = config(&world);
    let src = source(&world);
    let args = [
        "--dataset",
        "http_requests",
        "--from",
        "2026-11-01T00",
        "--to",
        "2026-11-01T03",
        "--source",
        &src,
        "--id",
        "twice",
    ];
    let mut a = world.weir_job("backfill", &config, &args, "a.log", &[]);
    let mut b = world.weir_job("backfill", &config, &args, "b.log", &[]);
    let sa = a
        .wait_timeout(Duration::from_secs(300))
        .expect("a finished");
    let sb = b
        .wait_timeout(Duration::from_secs(300))
        .expect("b finished");
    // One may lose a commit race (fenced: it stops, its files removed); then a re-run
    // finishes the work.
    if !sa.success() || !sb.success() {
        for (ok, log) in [(sa.success(), "a.log"), (sb.success(), "b.log")] {
            assert!(
                ok || world.log(log).contains("another run of the same shard"),
                "{}",
                world.log(log)
            );
        }
        let status = backfill(
            &world,
            &config,
            &["--source", &src, "--id", "twice"],
            "c.log",
            &[],
        );
        assert!(status.success(), "{}", world.log("c.log"));
    }
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world.assert_exactly_once(&config, &archive.in_range)
    }));
    if let Err(e) = checked {
        let entries = world.query(
            &config,
            "SELECT topic, \"partition\", seq, epoch, kind, rows, files FROM commits ORDER BY seq",
        );
        panic!(
            "{:?}\ncommits:\n{}\n--- a\n{}\n--- b\n{}\n--- c\n{}",
            e.downcast_ref::<String>(),
            entries.join("\n"),
            world.log("a.log"),
            world.log("b.log"),
            world.log("c.log")
        );
    }
    let mut other = args.to_vec();
    other[5] = "2026-11-01T02";
    let status = world
        .weir_job("backfill", &config, &other, "other.log", &[])
        .wait_timeout(Duration::from_secs(120))
        .expect("finished");
    assert!(!status.success());
    assert!(
        world.log("other.log").contains("was planned with --to"),
        "{}",
        world.log("other.log")
    );
}
