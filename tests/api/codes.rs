//! The error codes agree in the three places a client may read them: the
//! code's table (`transcoder::codes`), the README and the OpenAPI document.

use std::collections::BTreeSet;

use serde_json::Value;
use transcoder::codes::{JOB_ERRORS, PROBLEMS};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

fn openapi() -> Value {
    transcoder::http::openapi::document()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn the_readme_lists_exactly_the_codes_of_the_code() {
    let text = readme();
    let errors = &text[text.find("### Errors").expect("README has ### Errors")..];
    // The job codes: the table between "A job that fails" and "HTTP errors:".
    let jobs = &errors[..errors.find("HTTP errors:").unwrap()];
    let job: BTreeSet<String> = jobs
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    assert_eq!(job, JOB_ERRORS.iter().map(|s| s.to_string()).collect(), "README job error codes");
    // The HTTP table: | status | `code` | when |
    let table: BTreeSet<(u16, String)> = errors
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let status = cells.get(1)?.parse().ok()?;
            Some((status, cells.get(2)?.trim_matches('`').to_string()))
        })
        .collect();
    assert_eq!(table, PROBLEMS.iter().map(|(s, c)| (*s, c.to_string())).collect(), "README problem table");
}

#[test]
fn the_openapi_document_lists_exactly_the_codes_of_the_code() {
    let doc = openapi();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        strings(&schemas["JobError"]["properties"]["code"]["enum"]),
        JOB_ERRORS.iter().map(|s| s.to_string()).collect(),
        "OpenAPI JobError.code"
    );
    let problems: BTreeSet<String> = PROBLEMS.iter().map(|(_, c)| c.to_string()).collect();
    assert_eq!(strings(&schemas["Problem"]["properties"]["code"]["enum"]), problems, "OpenAPI Problem.code");
    // Each response's narrower list names codes of the table, with their status.
    let responses = doc["components"]["responses"].as_object().unwrap();
    assert!(!responses.is_empty(), "the document has no problem responses");
    for (name, response) in responses {
        let schema = response
            .pointer("/content/application~1problem+json/schema/allOf/1/properties")
            .unwrap_or_else(|| panic!("response {name} is not a problem document"));
        let status = schema["status"]["enum"][0].as_u64().unwrap() as u16;
        for code in strings(&schema["code"]["enum"]) {
            assert!(PROBLEMS.contains(&(status, code.as_str())), "response {name}: {status} {code} not in the table");
        }
    }
    // Each operation's error answers are problem documents of their own status.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.as_str() < "400" {
                    continue;
                }
                let name = response["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/"));
                let name = name.unwrap_or_else(|| panic!("{method} {path} {status} is not a shared problem response"));
                let schema = &responses[name]["content"]["application/problem+json"]["schema"]["allOf"][1];
                assert_eq!(schema["properties"]["status"]["enum"][0].as_u64(), status.parse().ok(), "{method} {path}");
            }
        }
    }
}
