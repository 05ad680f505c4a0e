//! The JSON report: the [`Plan`](crate::cost::Plan) serialized as it is. Its
//! shape is documented in docs/plan.md and versioned by the `schema` field.

pub fn render(plan: &crate::cost::Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).expect("the plan serializes");
    text.push('\n');
    text
}
