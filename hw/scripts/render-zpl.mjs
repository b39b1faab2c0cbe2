// Renders ZPL from stdin to a PNG with zpl-renderer-js (an independent
// renderer: the zebrash Go library compiled to wasm). Usage: node render-zpl.mjs out.png
import { ready } from "zpl-renderer-js";
import fs from "node:fs";

const zpl = fs.readFileSync(0, "utf8");
const { api } = await ready;
const png = await api.zplToBase64Async(zpl, 101.6, 101.6, 8);
fs.writeFileSync(process.argv[2], Buffer.from(png, "base64"));
