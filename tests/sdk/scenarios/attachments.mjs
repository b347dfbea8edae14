// Attachments: binary and JSON attachments inside logged spans and dataset rows are uploaded through
// POST /attachment + signed PUT + /attachment/status, stored as references, and read back (fetch turns them
// into ReadonlyAttachment; data() downloads through GET /attachment + the signed URL) byte for byte.
// A span larger than the /logs3 limit goes through the overflow upload (/logs3/overflow + signed PUT).
import assert from "node:assert/strict";
import { Attachment, JSONAttachment, ReadonlyAttachment, initDataset, initLogger } from "braintrust";
import { btqlRows } from "../lib.mjs";

export default async function ({ exchanges }) {
  const bytes = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 31 + 7) % 256));
  const ds = initDataset({ project: "sdk attachments", dataset: "files" });
  ds.insert({
    input: { image: new Attachment({ data: bytes, filename: "noise.bin", contentType: "application/octet-stream" }) },
    expected: { notes: new JSONAttachment({ verdict: "ok", list: [1, 2, 3] }, { filename: "notes.json" }) },
  });
  await ds.flush();

  const [row] = await ds.fetchedData();
  const image = row.input.image;
  assert.ok(image instanceof ReadonlyAttachment, `input.image is an attachment: ${JSON.stringify(row.input)}`);
  assert.equal(image.reference.type, "braintrust_attachment");
  assert.equal(image.reference.filename, "noise.bin");
  assert.equal(image.reference.content_type, "application/octet-stream");
  assert.equal((await image.status()).upload_status, "done");
  const got = Buffer.from(await (await image.data()).arrayBuffer());
  assert.equal(got.length, bytes.length);
  assert.ok(got.equals(bytes), "the downloaded bytes equal the uploaded ones");
  const notes = JSON.parse(await (await row.expected.notes.data()).text());
  assert.deepEqual(notes, { verdict: "ok", list: [1, 2, 3] });

  // A span in project logs with an attachment, and one too large for a single /logs3 request.
  const logger = initLogger({ projectName: "sdk attachments", asyncFlush: true });
  await logger.traced(async (span) => {
    span.log({ input: { doc: new Attachment({ data: Buffer.from("hello attachment"), filename: "hello.txt", contentType: "text/plain" }) } });
  }, { name: "with attachment" });
  const big = "x".repeat(7 * 1024 * 1024);
  await logger.traced(async (span) => span.log({ input: "big", output: big }), { name: "big" });
  await logger.flush();
  assert.ok(exchanges.some((x) => x.target === "/logs3/overflow" && x.status === 200), "the big span went through overflow");

  const rows = await btqlRows("project_logs", await logger.id);
  const withAttachment = rows.find((r) => r.span_attributes.name === "with attachment");
  const ref = withAttachment.input.doc;
  assert.equal(ref.type, "braintrust_attachment");
  const text = await (await new ReadonlyAttachment(ref).data()).text();
  assert.equal(text, "hello attachment");
  const bigRow = rows.find((r) => r.span_attributes.name === "big");
  assert.equal(bigRow.output.length, big.length, "the overflowed span is stored whole");
}
