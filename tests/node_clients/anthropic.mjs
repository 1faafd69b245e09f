// The official @anthropic-ai/sdk client, unmodified: GW_BASE_URL (the gateway's root: the SDK appends
// /v1/messages), GW_KEY, GW_STEPS (steps.mjs). GW_AUTH names the client option that carries the key:
// `apiKey` (the SDK's default) or `authToken`. GW_SDK=0 runs the last 0.x release, which sends `apiKey` as
// `x-api-key` (1.x sends both options as `Authorization: Bearer`).
import { clientOptions, runSteps } from "./steps.mjs";

const { default: Anthropic } = await import(process.env.GW_SDK === "0" ? "anthropic-sdk-0" : "@anthropic-ai/sdk");
await runSteps(new Anthropic({ ...clientOptions(), [process.env.GW_AUTH ?? "apiKey"]: process.env.GW_KEY }));
