//! `S3Sink` against moto: bytes in are bytes out, overwrites replace, listing by prefix.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use integration_tests::moto::{Moto, unique};
use shared::sink::{ObjectMeta, ObjectSink, S3Sink};

const NDJSON_GZ: ObjectMeta = ObjectMeta {
    content_type: "application/x-ndjson",
    content_encoding: Some("gzip"),
};

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(text.as_bytes()).expect("gzip");
    enc.finish().expect("gzip")
}

async fn sink() -> (Moto, S3Sink) {
    let moto = Moto::connect().await;
    let bucket = moto.bucket().await;
    let sink = S3Sink::new(moto.s3.clone(), bucket);
    (moto, sink)
}

#[tokio::test]
async fn gzip_bytes_come_back_identical_with_their_metadata() {
    let (moto, sink) = sink().await;
    let text = (0..500)
        .map(|i| format!("{{\"Id\":\"{i}\",\"Operation\":\"MailItemsAccessed\"}}\n"))
        .collect::<String>();
    let body = gzip(&text);
    let key = "tenant/Audit.Exchange/2026/11/22/blob.json.gz";
    sink.put(key, body.clone().into(), &NDJSON_GZ)
        .await
        .unwrap();

    let got = sink.get(key).await.unwrap().expect("object exists");
    assert_eq!(got, body, "the SDK does not decompress: same bytes");
    let mut back = String::new();
    GzDecoder::new(&got[..]).read_to_string(&mut back).unwrap();
    assert_eq!(back, text);

    let head = moto
        .s3
        .head_object()
        .bucket(sink.bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-ndjson"));
    assert_eq!(head.content_encoding(), Some("gzip"));
}

#[tokio::test]
async fn a_missing_key_is_none() {
    let (_moto, sink) = sink().await;
    assert_eq!(sink.get("nothing/here.json.gz").await.unwrap(), None);
}

#[tokio::test]
async fn writing_a_key_again_leaves_one_object() {
    let (_moto, sink) = sink().await;
    let key = "t/Audit.General/2026/11/22/same.json.gz";
    sink.put(key, gzip("first\n").into(), &NDJSON_GZ)
        .await
        .unwrap();
    sink.put(key, gzip("second\n").into(), &NDJSON_GZ)
        .await
        .unwrap();
    assert_eq!(sink.list("t/").await.unwrap(), [key]);
    assert_eq!(sink.get(key).await.unwrap().unwrap(), gzip("second\n"));
}

#[tokio::test]
async fn list_is_by_prefix_and_sorted() {
    let (_moto, sink) = sink().await;
    let keys = [
        "b/Audit.Exchange/2026/11/22/2.json.gz",
        "a/Audit.SharePoint/2026/11/22/1.json.gz",
        "a/Audit.Exchange/2026/11/23/1.json.gz",
        "a/Audit.Exchange/2026/11/22/9.json.gz",
        "ab/Audit.Exchange/2026/11/22/1.json.gz",
    ];
    for k in keys {
        sink.put(k, gzip(k).into(), &NDJSON_GZ).await.unwrap();
    }
    assert_eq!(
        sink.list("a/").await.unwrap(),
        [
            "a/Audit.Exchange/2026/11/22/9.json.gz",
            "a/Audit.Exchange/2026/11/23/1.json.gz",
            "a/Audit.SharePoint/2026/11/22/1.json.gz",
        ]
    );
    assert_eq!(
        sink.list("a/Audit.Exchange/2026/11/2").await.unwrap().len(),
        2
    );
    assert_eq!(sink.list("").await.unwrap().len(), 5);
    assert!(sink.list("c/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_that_names_it() {
    let moto = Moto::connect().await;
    let bucket = unique("nobucket");
    let sink = S3Sink::new(moto.s3.clone(), bucket.clone());
    let err = sink
        .put("k", gzip("x").into(), &NDJSON_GZ)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&bucket) && text.contains("NoSuchBucket"),
        "{text}"
    );
    assert!(!err.retryable);
}

#[tokio::test]
async fn large_objects_go_up_in_parts_and_appear_only_when_complete() {
    let (moto, sink) = sink().await;
    // 13 MiB: two full 5 MiB parts and a last one of 3 MiB.
    let data: Vec<u8> = (0..13 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let key = "ocsf/tenant_id=t/content_type=Audit.General/event_date=2026-11-22/big.ndjson.gz";
    let mut w = shared::sink::ObjectWriter::with_part_size(
        &sink,
        key.into(),
        NDJSON_GZ,
        shared::sink::MIN_PART,
    );
    for chunk in data.chunks(1 << 20) {
        w.write(chunk).await.unwrap();
        assert!(w.buffered() < shared::sink::MIN_PART + (1 << 20));
    }
    assert_eq!(
        sink.get(key).await.unwrap(),
        None,
        "invisible before completion"
    );
    let uploads = moto
        .s3
        .list_multipart_uploads()
        .bucket(sink.bucket())
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploads.uploads().len(),
        1,
        "a multipart upload is under way"
    );
    assert_eq!(w.finish().await.unwrap(), data.len() as u64);
    let back = sink.get(key).await.unwrap().expect("object");
    assert!(back == data, "the object is the bytes written, in order");

    // An aborted upload leaves neither an object nor an open upload.
    let mut w = shared::sink::ObjectWriter::with_part_size(
        &sink,
        "raw/gone.json.gz".into(),
        NDJSON_GZ,
        shared::sink::MIN_PART,
    );
    w.write(&data[..6 * 1024 * 1024]).await.unwrap();
    w.abort().await;
    assert_eq!(sink.get("raw/gone.json.gz").await.unwrap(), None);
    let uploads = moto
        .s3
        .list_multipart_uploads()
        .bucket(sink.bucket())
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the upload was aborted");
}
