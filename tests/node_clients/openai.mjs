// The official openai-node client, unmodified: GW_BASE_URL (the gateway's /v1), GW_KEY, GW_STEPS (steps.mjs).
import OpenAI from "openai";

import { clientOptions, runSteps } from "./steps.mjs";

await runSteps(new OpenAI({ ...clientOptions(), apiKey: process.env.GW_KEY }));
