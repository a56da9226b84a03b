//! The contract every backend passes: the directory, Azure Blob Storage (against Azurite) and
//! S3 (against moto_server). `scripts/test.sh` starts the emulators and names them in
//! `THUNDERHEAD_TEST_AZURE` and `THUNDERHEAD_TEST_S3`.

use crate::{BlobError, BlobStore};
use bytes::Bytes;

/// A store under a fresh prefix of the backend's test container, so tests do not meet.
fn fresh(base: &str) -> BlobStore {
    let unique = format!(
        "t{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let (path, query) = base.split_once('?').map_or((base, String::new()), |(p, q)| (p, format!("?{q}")));
    BlobStore::open(&format!("{}/{unique}{query}", path.trim_end_matches('/'))).unwrap()
}

fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test.sh, which starts the blob emulators")
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub async fn round_trip_of_a_large_file(s: &BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    // 20 MiB of non-repeating bytes: several parts.
    let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let up = s.put_file("pkg/big.bin", &src).await.unwrap();
    assert_eq!(up.size, data.len() as u64);
    let dest = dir.path().join("out/big.bin");
    let down = s.get_to_file("pkg/big.bin", &dest).await.unwrap();
    assert_eq!(down, up);
    assert!(std::fs::read(&dest).unwrap() == data, "the bytes came back unchanged");
}

pub async fn listing_deleting_and_missing_blobs(s: &BlobStore) {
    s.put_bytes("jobs/1/1/out.txt", Bytes::from_static(b"one")).await.unwrap();
    s.put_bytes("jobs/1/2/out.txt", Bytes::from_static(b"two")).await.unwrap();
    s.put_bytes("other/x", Bytes::from_static(b"x")).await.unwrap();
    let listed = s.list("jobs/1").await.unwrap();
    assert_eq!(listed, vec![("jobs/1/1/out.txt".to_string(), 3), ("jobs/1/2/out.txt".to_string(), 3)]);
    assert_eq!(s.get_bytes("jobs/1/2/out.txt").await.unwrap(), Bytes::from_static(b"two"));
    s.delete("jobs/1/1/out.txt").await.unwrap();
    s.delete("jobs/1/1/out.txt").await.expect("deleting twice succeeds");
    match s.get_bytes("jobs/1/1/out.txt").await {
        Err(BlobError::NotFound { key, .. }) => assert_eq!(key, "jobs/1/1/out.txt"),
        other => panic!("expected not found, got {other:?}"),
    }
}

pub async fn streams_go_up_and_come_back(s: &BlobStore) {
    let chunks: Vec<Result<Bytes, String>> = (0..40).map(|i| Ok(Bytes::from(vec![i as u8; 300_000]))).collect();
    let up = s.put_stream("streamed/blob", futures_util::stream::iter(chunks)).await.unwrap();
    assert_eq!(up.size, 12_000_000);
    let (size, mut stream) = s.get_stream("streamed/blob").await.unwrap();
    assert_eq!(size, 12_000_000);
    let mut back = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        back.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(back.len(), 12_000_000);
    assert!(back[..300_000].iter().all(|b| *b == 0) && back[11_700_000..].iter().all(|b| *b == 39));
    let broken = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"x")), Err("client went away".to_string())]);
    let err = s.put_stream("streamed/broken", broken).await.unwrap_err().to_string();
    assert!(err.contains("streamed/broken") && err.contains("client went away"), "{err}");
}

pub async fn a_damaged_blob_is_refused_by_name(s: &BlobStore) {
    s.put_bytes("data/in.txt", Bytes::from_static(b"original")).await.unwrap();
    s.put_raw("data/in.txt", Bytes::from_static(b"tampered")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("in.txt");
    let err = s.get_to_file("data/in.txt", &dest).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BlobError::Checksum { .. }), "{text}");
    assert!(text.contains("data/in.txt") && text.contains("damaged"), "{text}");
    assert!(!dest.exists(), "nothing half-checked is left behind");
    let (_, mut stream) = s.get_stream("data/in.txt").await.unwrap();
    let mut last = None;
    while let Some(item) = futures_util::StreamExt::next(&mut stream).await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err();
    assert!(err.contains("data/in.txt") && err.contains("damaged"), "a served stream ends in the error: {err}");
}

macro_rules! contract {
    ($name:ident, $open:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn round_trip_of_a_large_file() {
                runtime().block_on(super::round_trip_of_a_large_file(&$open));
            }

            #[test]
            fn listing_deleting_and_missing_blobs() {
                runtime().block_on(super::listing_deleting_and_missing_blobs(&$open));
            }

            #[test]
            fn streams_go_up_and_come_back() {
                runtime().block_on(super::streams_go_up_and_come_back(&$open));
            }

            #[test]
            fn a_damaged_blob_is_refused_by_name() {
                runtime().block_on(super::a_damaged_blob_is_refused_by_name(&$open));
            }
        }
    };
}

contract!(directory, {
    let dir = tempfile::tempdir().unwrap().keep();
    BlobStore::open(&format!("file://{}", dir.display())).unwrap()
});
#[cfg(feature = "azure")]
contract!(azure_blob_on_azurite, fresh(&emulator("THUNDERHEAD_TEST_AZURE")));
#[cfg(feature = "s3")]
contract!(s3_on_moto, fresh(&emulator("THUNDERHEAD_TEST_S3")));
