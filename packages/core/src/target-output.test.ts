import { describe, expect, it } from 'vitest';
import { isBktError } from './errors.js';
import { outputSpecOf, type TargetOutput } from './target-output.js';

const where = 'target "app": outputs[0]';

function errorOf(output: unknown): { code: string; message: string; attribute: unknown } {
  try {
    outputSpecOf(output as TargetOutput, where);
  } catch (err) {
    if (!isBktError(err)) throw err;
    return { code: err.code, message: err.message, attribute: err.details.attribute };
  }
  throw new Error('no error');
}

describe('outputSpecOf', () => {
  it('turns typed attributes into the exporters\' string attributes', () => {
    expect(
      outputSpecOf(
        {
          type: 'image',
          name: ['reg.example/app:1', 'reg.example/app:latest'],
          push: true,
          insecure: false,
          compression: 'zstd',
          compressionLevel: 3,
          ociMediaTypes: true,
          annotations: { 'org.opencontainers.image.title': 'app' },
          sourceDateEpoch: 0,
        },
        where,
      ),
    ).toEqual({
      type: 'image',
      name: 'reg.example/app:1,reg.example/app:latest',
      push: 'true',
      'registry.insecure': 'false',
      compression: 'zstd',
      'compression-level': '3',
      'oci-mediatypes': 'true',
      'annotation.org.opencontainers.image.title': 'app',
      'source-date-epoch': '0',
    });
    expect(outputSpecOf({ type: 'oci', dest: 'app.tar', tar: false, name: 'app' }, where)).toEqual({ type: 'oci', dest: 'app.tar', tar: 'false', name: 'app' });
    expect(outputSpecOf({ type: 'local', dest: 'out', platformSplit: false }, where)).toEqual({ type: 'local', dest: 'out', 'platform-split': 'false' });
    expect(outputSpecOf({ type: 'registry', name: 'reg.example/app:1' }, where)).toEqual({ type: 'registry', name: 'reg.example/app:1' });
    expect(outputSpecOf({ exporter: 'zip', attrs: { level: '9' } }, where)).toEqual({ type: 'zip', level: '9' });
  });

  it('leaves out attributes set to undefined', () => {
    expect(outputSpecOf({ type: 'image', name: 'app', push: undefined }, where)).toEqual({ type: 'image', name: 'app' });
  });

  it('names an unknown type, an unknown attribute, a missing dest and a value of the wrong type', () => {
    expect(errorOf({ type: 'zip' })).toMatchObject({ code: 'CONFIG', attribute: 'type' });
    expect(errorOf({ type: 'zip' }).message).toMatch(/^target "app": outputs\[0\]: unknown output type "zip" \(known: image, registry, oci, docker, local, tar;/);
    expect(errorOf({ type: 'image', pussh: true })).toMatchObject({
      attribute: 'pussh',
      message: expect.stringMatching(/unknown attribute "pussh" of an image output \(known: name, .*push/),
    });
    expect(errorOf({ type: 'registry', push: true }).message).toMatch(/unknown attribute "push" of a registry output/);
    expect(errorOf({ type: 'tar' })).toMatchObject({ attribute: 'dest', message: `${where}: a tar output needs "dest"` });
    expect(errorOf({ type: 'image', push: 'true' })).toMatchObject({ attribute: 'push', message: `${where}: "push" must be true or false, got the string "true"` });
    expect(errorOf({ type: 'image', compressionLevel: 1.5 }).message).toMatch(/"compressionLevel" must be a whole number, got number 1.5/);
    expect(errorOf({ type: 'image', name: 'a,b' }).message).toMatch(/"name" must be an image name or a list of them/);
    expect(errorOf({ type: 'image', annotations: { a: 1 } }).message).toMatch(/"annotations"\.a must be a string, got number 1/);
    expect(errorOf({ type: 'local', dest: '' }).message).toMatch(/"dest" must be a non-empty string/);
    expect(errorOf({ exporter: 'zip', level: '9' })).toMatchObject({ attribute: 'level' });
    expect(errorOf({ exporter: 'zip', attrs: { level: 9 } }).message).toMatch(/attrs\.level must be a string, got number 9/);
    expect(errorOf('type=local,dest=out').message).toMatch(/an output must be an object/);
  });
});
