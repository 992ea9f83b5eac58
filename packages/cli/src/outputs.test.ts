import { describe, expect, it } from 'vitest';
import { parseAnnotations, planOutputs } from './outputs.js';

describe('planOutputs: --load, type=cacheonly, --annotation', () => {
  it('--load adds a docker output writing to the given file, named by -t', async () => {
    expect(await planOutputs([], { tags: ['app'], push: false, load: '/tmp/x.tar' })).toEqual([{ type: 'docker', dest: '/tmp/x.tar', name: 'app' }]);
    expect(await planOutputs([], { tags: ['app'], push: true, load: '/tmp/x.tar' })).toEqual([
      { type: 'image', push: 'true', name: 'app' },
      { type: 'docker', dest: '/tmp/x.tar', name: 'app' },
    ]);
  });

  it('type=cacheonly exports nothing and keeps -t from adding an image; attributes on it are an error', async () => {
    expect(await planOutputs([{ type: 'cacheonly' }], { tags: ['app'], push: false })).toEqual([]);
    await expect(planOutputs([{ type: 'cacheonly', dest: '/x' }], { tags: [], push: false })).rejects.toThrow(/type=cacheonly takes no attributes \(got dest\)/);
  });

  it('--annotation reaches every image output with OCI media types, unless the output chose its media types', async () => {
    const out = await planOutputs([{ type: 'local', dest: '/o' }, { type: 'oci', dest: '/o.tar', 'oci-mediatypes': 'false' }], {
      tags: ['app'],
      push: false,
      annotations: ['org.example.a=1'],
      load: '/tmp/x.tar',
    });
    expect(out).toEqual([
      { type: 'local', dest: '/o' },
      { type: 'oci', dest: '/o.tar', 'oci-mediatypes': 'false', name: 'app', 'annotation.org.example.a': '1' },
      { type: 'docker', dest: '/tmp/x.tar', name: 'app', 'annotation.org.example.a': '1', 'oci-mediatypes': 'true' },
    ]);
    await expect(planOutputs([{ type: 'local', dest: '/o' }], { tags: [], push: false, annotations: ['a=b'] })).rejects.toThrow(/--annotation: the build exports no image/);
  });
});

describe('parseAnnotations (buildx --annotation)', () => {
  it('maps KEY=VALUE to the manifest and TYPE[PLATFORM]:KEY=VALUE to each type', async () => {
    expect(await parseAnnotations(['a=1', 'manifest,index:b=x=y', 'manifest-descriptor[linux/aarch64]:c=', 'index-descriptor:d=4'])).toEqual({
      'annotation.a': '1',
      'annotation-manifest.b': 'x=y',
      'annotation-index.b': 'x=y',
      'annotation-manifest-descriptor[linux/arm64].c': '',
      'annotation-index-descriptor.d': '4',
    });
  });

  it('names the bad value and the problem', async () => {
    await expect(parseAnnotations(['novalue'])).rejects.toThrow(/--annotation novalue: expected KEY=VALUE/);
    await expect(parseAnnotations(['layer:k=v'])).rejects.toThrow(/--annotation layer:k=v: unknown annotation type "layer"/);
    await expect(parseAnnotations(["manifest[linux/amd64/v2/x]:k=v"])).rejects.toThrow(/--annotation manifest\[linux\/amd64\/v2\/x\]:k=v: invalid platform "linux\/amd64\/v2\/x": too many components/);
    await expect(parseAnnotations(['manifest:=v'])).rejects.toThrow(/the key is empty/);
  });
});
