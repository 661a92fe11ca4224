// Reads queries with the official ClickHouse JS client (@clickhouse/client) and prints what came back.
// stdin: {"url", "username", "password", "queries": [{"name", "sql"}]}; stdout: one JSON document.
import { createClient } from "@clickhouse/client";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { url, username, password, queries } = JSON.parse(input);

const client = createClient({ url, username, password, compression: { response: true }, request_timeout: 120_000 });
const out = { ping: null, results: [], error: null };
out.ping = (await client.ping()).success;
for (const { name, sql } of queries) {
  try {
    const result = await client.query({ query: sql, format: "JSONEachRow" });
    const rows = await result.json();
    out.results.push({ name, rows: rows.length, columns: rows.length ? Object.keys(rows[0]) : [], query_id: result.query_id });
  } catch (error) {
    out.results.push({ name, error: String(error.message), code: error.code ?? null });
  }
}
try {
  await client.query({ query: "SELECT no_such_column FROM llm_calls", format: "JSONEachRow" });
} catch (error) {
  out.error = { message: error.message, code: error.code ?? null, type: error.type ?? null, name: error.constructor.name };
}
await client.close();
console.log(JSON.stringify(out));
