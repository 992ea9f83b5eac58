/**
 * @bkt/exporter-oci/testing: validators of what the exporters write, each an
 * independent tool (oci-image-tool, umoci, skopeo). They throw with the tool's
 * output when it refuses.
 */
import { execFile } from 'node:child_process';

export function runTool(cmd: string, args: string[], opts: { timeout?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: opts.timeout ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || stdout || err.message}`)) : resolve(String(stdout)),
    ),
  );
}

/**
 * `oci-image-tool validate --type image` of a layout directory: its layout,
 * index, manifests, configs and layer digests (Debian's 1.0.0-rc1 has no
 * separate `imageLayout` type). `ref` picks one image (`name=v1`).
 */
export function validateLayout(dir: string, ref?: string): Promise<string> {
  return runTool('oci-image-tool', ['validate', '--type', 'image', ...(ref ? ['--ref', ref] : []), dir]);
}
