//! `GET /video/jobs`: the client's own jobs, oldest first, in pages that
//! neither repeat nor skip; filters; bad parameters refused.

use serde_json::Value;

use crate::helpers::*;

async fn list(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let r = app.http.get(app.url(&format!("/video/jobs{query}"))).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_oldest_first_in_pages_that_neither_repeat_nor_skip_and_only_the_clients_own() {
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap();
    let mut alpha = Subscriber::bind(&app.prefix, "alpha", "job.completed.*").await;
    let submit = |key: &'static str| {
        let body = clip.clone();
        let request = app.http.post(app.url("/video/convert")).header("Content-Type", "video/mp4").bearer_auth(key);
        async move {
            let r = request.body(body).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    let mut submitted = Vec::new();
    for n in 0..5 {
        submitted.push(submit("key-alpha").await);
        if n == 1 {
            submit("key-beta").await;
        }
    }
    for id in &submitted {
        alpha.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    }

    let (status, all) = list(&app, "key-alpha", "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), submitted, "oldest first, only alpha's");
    assert_eq!(all["next-page-token"], Value::Null);

    // Pages of two: 2, 2, 1, then no token; together exactly the five.
    let (mut pages, mut token) = (Vec::new(), None::<String>);
    loop {
        let query = match &token {
            Some(t) => format!("?limit=2&page_token={t}"),
            None => "?limit=2".to_string(),
        };
        let (status, page) = list(&app, "key-alpha", &query).await;
        assert_eq!(status, 200, "{page}");
        pages.push(ids(&page));
        match page["next-page-token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(pages.len() < 10, "pages never end: {pages:?}");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(pages.concat(), submitted);

    let (_, done) = list(&app, "key-alpha", "?status=done").await;
    assert_eq!(ids(&done), submitted);
    let (_, queued) = list(&app, "key-alpha", "?status=queued,processing").await;
    assert_eq!(ids(&queued), Vec::<String>::new());

    // since: the third job's submission time gives the last three.
    let third = &all["jobs"][2]["submitted-utc-time"];
    let since = third.as_str().unwrap().replace('+', "%2B");
    let (status, recent) = list(&app, "key-alpha", &format!("?since={since}")).await;
    assert_eq!(status, 200, "{recent}");
    assert_eq!(ids(&recent), submitted[2..].to_vec());

    let (_, beta) = list(&app, "key-beta", "").await;
    assert_eq!(beta["jobs"].as_array().unwrap().len(), 1);
    assert!(!submitted.contains(&ids(&beta)[0]));

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=two",
        "?status=finished",
        "?since=yesterday",
        "?page_token=zz",
        "?color=red",
    ] {
        let (status, problem) = list(&app, "key-alpha", bad).await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["code"], "invalid-option", "{bad}");
    }
    let r = app.http.get(app.url("/video/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
