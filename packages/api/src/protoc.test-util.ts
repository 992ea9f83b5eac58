/** Runs the protoc binary of the `protoc` npm package on bkt's proto files (test helper). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { protocIncludeDir, protocPath, protoRootDir } from '../scripts/generate.mjs';

export const OPS_PROTO = 'github.com/moby/buildkit/solver/pb/ops.proto';

function protoc(args: string[], input: Uint8Array | string): Buffer {
  return execFileSync(protocPath(), [`-I${protoRootDir()}`, `-I${protocIncludeDir()}`, ...args], {
    input,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** `protoc --decode <type>`: binary message → protobuf text format. */
export function protocDecode(type: string, bytes: Uint8Array, file = OPS_PROTO): string {
  return protoc([`--decode=${type}`, file], bytes).toString('utf8');
}

/** `protoc --encode <type>`: protobuf text format → binary message. */
export function protocEncode(type: string, text: string, file = OPS_PROTO): Buffer {
  return protoc([`--encode=${type}`, file], text);
}

/** `protoc --descriptor_set_out` of the given files (with imports): a serialized FileDescriptorSet. */
export function protocDescriptorSet(files: string[]): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'bkt-api-descriptors-'));
  try {
    const out = join(dir, 'set.pb');
    protoc(['--include_imports', `--descriptor_set_out=${out}`, ...files], '');
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
