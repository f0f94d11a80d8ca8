use super::*;

fn put(path: &str, value: &str) -> V2Request {
    V2Request {
        method: "PUT".into(),
        path: path.into(),
        value: value.into(),
        ..Default::default()
    }
}

#[test]
fn set_get_and_indexes() {
    let mut s = V2Store::default();
    let e = s.apply(&put("/foo", "bar")).unwrap();
    assert_eq!(e.action, "set");
    assert_eq!(
        e.to_json(),
        r#"{"action":"set","node":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}"#
    );
    let e = s.apply(&put("foo", "baz")).unwrap();
    assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("bar"));
    let got = s.get("/foo", false, false, 0).unwrap();
    assert_eq!(got.node.value.as_deref(), Some("baz"));
    // As etcd: a set replaces the node, so it is created anew.
    assert_eq!((got.node.created_index, got.node.modified_index), (2, 2));
    let missing = s.get("/nope", false, false, 0).unwrap_err();
    assert_eq!(
        missing.to_json(),
        r#"{"errorCode":100,"message":"Key not found","cause":"/nope","index":2}"#
    );
}

#[test]
fn directories_create_and_conditions() {
    let mut s = V2Store::default();
    s.apply(&put("/dir/a", "1")).unwrap();
    let not_file = s.apply(&put("/dir", "x")).unwrap_err();
    assert_eq!(not_file.error_code, NOT_FILE);
    let not_dir = s.apply(&put("/dir/a/b", "x")).unwrap_err();
    assert_eq!(not_dir.error_code, NOT_DIR);
    let exists = s
        .apply(&V2Request {
            prev_exist: Some(false),
            ..put("/dir/a", "2")
        })
        .unwrap_err();
    assert_eq!(
        (exists.error_code, exists.message.as_str()),
        (105, "Key already exists")
    );
    let failed = s
        .apply(&V2Request {
            prev_value: Some("nope".into()),
            ..put("/dir/a", "2")
        })
        .unwrap_err();
    assert_eq!(
        (failed.error_code, failed.cause.as_str()),
        (101, "[nope != 1]")
    );
    let swapped = s
        .apply(&V2Request {
            prev_value: Some("1".into()),
            ..put("/dir/a", "2")
        })
        .unwrap();
    assert_eq!(swapped.action, "compareAndSwap");
    let listing = s.get("/", true, true, 0).unwrap();
    let dir = &listing.node.nodes.as_ref().unwrap()[0];
    assert!(dir.dir && dir.key == "/dir");
    assert_eq!(dir.nodes.as_ref().unwrap()[0].value.as_deref(), Some("2"));
}

#[test]
fn delete_rules_in_order_keys_and_expiry() {
    let mut s = V2Store::default();
    s.apply(&put("/d/x", "1")).unwrap();
    let del = |path: &str, dir: bool, recursive: bool| V2Request {
        method: "DELETE".into(),
        path: path.into(),
        dir,
        recursive,
        ..Default::default()
    };
    assert_eq!(
        s.apply(&del("/d", false, false)).unwrap_err().error_code,
        NOT_FILE
    );
    assert_eq!(
        s.apply(&del("/d", true, false)).unwrap_err().error_code,
        DIR_NOT_EMPTY
    );
    let gone = s.apply(&del("/d", true, true)).unwrap();
    assert!(gone.node.dir);
    assert!(s.get("/d/x", false, false, 0).is_err());

    let a = s
        .apply(&V2Request {
            method: "POST".into(),
            path: "/q".into(),
            value: "first".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(a.node.key.starts_with("/q/0000"), "{}", a.node.key);

    s.apply(&V2Request {
        expiration: 1_000,
        ..put("/ttl", "v")
    })
    .unwrap();
    assert!(s.has_expiring());
    s.apply(&V2Request {
        method: "SYNC".into(),
        now: 2_000,
        ..Default::default()
    })
    .ok();
    assert!(s.get("/ttl", false, false, 0).is_err());
    let expired = s.event_since("/ttl", false, 1).unwrap().unwrap();
    assert_eq!(expired.action, "set");
    let last = s.event_since("/ttl", false, s.index()).unwrap().unwrap();
    assert_eq!(last.action, "expire");
}
