import { describe, expect, it } from 'vitest';
import { parseAnnotations, planOutputs } from './outputs.js';

describe('planOutputs: --load, type=cacheonly, --annotation', () => {
  it('--load adds a docker output writing to the given file, named by -t', () => {
    expect(planOutputs([], { tags: ['app'], push: false, load: '/tmp/x.tar' })).toEqual([{ type: 'docker', dest: '/tmp/x.tar', name: 'app' }]);
    expect(planOutputs([], { tags: ['app'], push: true, load: '/tmp/x.tar' })).toEqual([
      { type: 'image', push: 'true', name: 'app' },
      { type: 'docker', dest: '/tmp/x.tar', name: 'app' },
    ]);
  });

  it('type=cacheonly exports nothing and keeps -t from adding an image; attributes on it are an error', () => {
    expect(planOutputs([{ type: 'cacheonly' }], { tags: ['app'], push: false })).toEqual([]);
    expect(() => planOutputs([{ type: 'cacheonly', dest: '/x' }], { tags: [], push: false })).toThrow(/type=cacheonly takes no attributes \(got dest\)/);
  });

  it('--annotation reaches every image output with OCI media types, unless the output chose its media types', () => {
    const out = planOutputs([{ type: 'local', dest: '/o' }, { type: 'oci', dest: '/o.tar', 'oci-mediatypes': 'false' }], {
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
    expect(() => planOutputs([{ type: 'local', dest: '/o' }], { tags: [], push: false, annotations: ['a=b'] })).toThrow(/--annotation: the build exports no image/);
  });
});

describe('parseAnnotations (buildx --annotation)', () => {
  it('maps KEY=VALUE to the manifest and TYPE[PLATFORM]:KEY=VALUE to each type', () => {
    expect(parseAnnotations(['a=1', 'manifest,index:b=x=y', 'manifest-descriptor[linux/aarch64]:c=', 'index-descriptor:d=4'])).toEqual({
      'annotation.a': '1',
      'annotation-manifest.b': 'x=y',
      'annotation-index.b': 'x=y',
      'annotation-manifest-descriptor[linux/arm64].c': '',
      'annotation-index-descriptor.d': '4',
    });
  });

  it('names the bad value and the problem', () => {
    expect(() => parseAnnotations(['novalue'])).toThrow(/--annotation novalue: expected KEY=VALUE/);
    expect(() => parseAnnotations(['layer:k=v'])).toThrow(/--annotation layer:k=v: unknown annotation type "layer"/);
    expect(() => parseAnnotations(["manifest[linux/amd64/v2/x]:k=v"])).toThrow(/--annotation manifest\[linux\/amd64\/v2\/x\]:k=v: invalid platform "linux\/amd64\/v2\/x": too many components/);
    expect(() => parseAnnotations(['manifest:=v'])).toThrow(/the key is empty/);
  });
});
