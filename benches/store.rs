//! Throughput of the store's hot paths over deterministic data: the CPU
//! references (one thread of BLAKE3, FastCDC, both together), object
//! encode/decode, and store put / read against RocksDB in a temp dir.
//!
//! `cargo bench --bench store` (a release build).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use depot::store::{ChunkId, Chunker, ChunkerParams, FsyncPolicy, Store, StoreOptions, Tenant, object};
use depot::testdata::pseudo_random;
use futures_util::StreamExt;

const INPUT: usize = 64 << 20;

fn cpu(c: &mut Criterion) {
    let input = pseudo_random(INPUT, 1);
    let chunker = Chunker::new(ChunkerParams::default()).unwrap();
    let mut g = c.benchmark_group("cpu");
    g.throughput(Throughput::Bytes(INPUT as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("blake3", |b| b.iter(|| black_box(blake3::hash(&input))));
    g.bench_function("fastcdc", |b| b.iter(|| black_box(chunker.chunk_all(&input).len())));
    g.bench_function("fastcdc+blake3", |b| {
        b.iter(|| {
            let mut at = 0;
            for n in chunker.chunk_all(&input) {
                black_box(ChunkId::of(&input[at..at + n]));
                at += n;
            }
        })
    });
    g.finish();
}

fn objects(c: &mut Criterion) {
    let random = pseudo_random(256 << 10, 2);
    let text: Vec<u8> = b"depot stores every byte once; ".iter().copied().cycle().take(256 << 10).collect();
    let mut g = c.benchmark_group("object");
    g.throughput(Throughput::Bytes(256 << 10));
    for (name, raw) in [("random", &random), ("text", &text)] {
        let id = ChunkId::of(raw);
        let enc = object::encode(&id, raw, 1);
        g.bench_with_input(BenchmarkId::new("encode", name), raw, |b, raw| {
            b.iter(|| black_box(object::encode(&id, raw, 1)))
        });
        g.bench_with_input(BenchmarkId::new("decode_crc", name), &enc, |b, enc| {
            b.iter(|| black_box(object::decode(enc, 1 << 20, false).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("decode_full", name), &enc, |b, enc| {
            b.iter(|| black_box(object::decode(enc, 1 << 20, true).unwrap()))
        });
    }
    g.finish();
}

fn store(c: &mut Criterion) {
    const FILE: usize = 64 << 20;
    let input = pseudo_random(FILE, 3);
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(FILE as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Batch] {
        let name = format!("{fsync:?}").to_lowercase();
        g.bench_function(BenchmarkId::new("put_new", &name), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let opts = StoreOptions { fsync, ..StoreOptions::default() };
                    let store = Store::open(dir.path(), opts).unwrap();
                    (dir, store)
                },
                |(dir, store)| {
                    let mut ing = store.ingest(Tenant::default()).unwrap();
                    for piece in input.chunks(1 << 20) {
                        ing.push(piece).unwrap();
                    }
                    black_box(ing.finish(&"f.bin".parse().unwrap(), None).unwrap());
                    (dir, store)
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions { fsync: FsyncPolicy::Never, ..StoreOptions::default() })
        .unwrap();
    let mut ing = s.ingest(Tenant::default()).unwrap();
    ing.push(&input).unwrap();
    let rec = ing.finish(&"f.bin".parse().unwrap(), None).unwrap();
    g.bench_function("put_duplicate", |b| {
        b.iter(|| {
            let mut ing = s.ingest(Tenant::default()).unwrap();
            for piece in input.chunks(1 << 20) {
                ing.push(piece).unwrap();
            }
            black_box(ing.finish(&"g.bin".parse().unwrap(), None).unwrap())
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    g.bench_function("read", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (rec, guard) = s.open_file(&rec.id).unwrap();
                let mut st = s.read_range(&rec, guard, 0, rec.size);
                let mut n = 0;
                while let Some(b) = st.next().await {
                    n += b.unwrap().len();
                }
                black_box(n)
            })
        })
    });
    let chunks: Vec<Bytes> = {
        let chunker = Chunker::new(ChunkerParams::default()).unwrap();
        let mut at = 0;
        chunker
            .chunk_all(&input)
            .into_iter()
            .map(|n| {
                at += n;
                Bytes::copy_from_slice(&input[at - n..at])
            })
            .collect()
    };
    let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("missing_query", |b| b.iter(|| black_box(s.missing(&ids, 0).unwrap())));
    g.finish();
}

criterion_group!(benches, cpu, objects, store);
criterion_main!(benches);
