// Runs the calls in GW_STEPS on a client one of the SDK scripts built, and prints one JSON line per call.
//
// GW_STEPS is a JSON list of {"call": "chat.completions.create", "args": [...]}: `call` is the SDK method's
// path on the client, `args` its arguments; {"$ref": "0.data.id"} in them stands for that field of an
// earlier call's line. A call's line is {"ok": true, "status", "headers", "data"} for an answer, plus
// "events" (their types), "text" and "usage" (the last one seen) for a stream, or {"ok": false, "error"}
// with what the SDK raised. Steps stop at the first error.

export async function runSteps(client) {
  const results = [];
  for (const step of JSON.parse(process.env.GW_STEPS)) {
    const result = await runStep(client, step, results);
    results.push(result);
    process.stdout.write(JSON.stringify(result) + "\n");
    if (!result.ok) break;
  }
}

export function clientOptions() {
  // No retries: a test sees each answer the gateway gave, once.
  return { baseURL: process.env.GW_BASE_URL, maxRetries: 0, timeout: 20_000 };
}

async function runStep(client, { call, args = [] }, results) {
  const path = call.split(".");
  const method = path.pop();
  const resource = path.reduce((object, name) => object[name], client);
  try {
    const { data, response } = await resource[method](...resolve(args, results)).withResponse();
    const result = { ok: true, status: response.status, headers: Object.fromEntries(response.headers) };
    if (typeof data?.[Symbol.asyncIterator] !== "function") return { ...result, data };
    Object.assign(result, await collect(data));
    // A stream helper (Anthropic's messages.stream) also gives the message it put together.
    if (typeof data.finalMessage === "function") result.data = await data.finalMessage();
    return result;
  } catch (error) {
    return { ok: false, error: describe(error) };
  }
}

function resolve(value, results) {
  if (Array.isArray(value)) return value.map((item) => resolve(item, results));
  if (value === null || typeof value !== "object") return value;
  if (typeof value.$ref === "string") {
    const [index, ...fields] = value.$ref.split(".");
    return fields.reduce((object, name) => object?.[name], results[Number(index)]);
  }
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolve(item, results)]));
}

async function collect(stream) {
  const events = [];
  let text = "";
  let usage = null;
  for await (const event of stream) {
    events.push(event.type ?? event.object);
    text += textOf(event);
    // Chat and completions chunks and Anthropic's message_delta carry `usage`, a Responses stream's final
    // event `response.usage`, Anthropic's message_start `message.usage`.
    usage = event.usage ?? event.response?.usage ?? event.message?.usage ?? usage;
  }
  return { events, text, usage };
}

function textOf(event) {
  if (event.type === "response.output_text.delta") return event.delta;
  if (event.type === "content_block_delta") return event.delta.text ?? "";
  const choice = event.choices?.[0];
  return choice?.delta?.content ?? choice?.text ?? "";
}

function describe(error) {
  return {
    name: error.constructor.name,
    status: error.status ?? null,
    type: error.type ?? null,
    code: error.code ?? null,
    message: error.message,
    body: error.error ?? null,
    headers: error.headers ? Object.fromEntries(error.headers) : null,
  };
}
