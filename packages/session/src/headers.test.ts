import { describe, expect, it } from 'vitest';
import { decodeOpts, encodeOpts, headerMapOf, headerValues } from './headers.js';

describe('session headers', () => {
  it('encodes FileSync metadata as BuildKit does: ASCII as is; non-ASCII (and commas) URL-query-escaped with <key>-encoded', () => {
    expect(encodeOpts({ 'dir-name': ['context'], 'include-patterns': ['src', '*.go'] })).toEqual({ 'dir-name': ['context'], 'include-patterns': ['src', '*.go'] });
    // Go: url.QueryEscape("héllo wörld/ä") == "h%C3%A9llo+w%C3%B6rld%2F%C3%A4"
    expect(encodeOpts({ 'include-patterns': ['héllo wörld/ä', 'plain'] })).toEqual({
      'include-patterns': ['h%C3%A9llo+w%C3%B6rld%2F%C3%A4', 'plain'],
      'include-patterns-encoded': ['1'],
    });
    expect(encodeOpts({ 'exclude-patterns': ['a,b'] })).toEqual({ 'exclude-patterns': ['a%2Cb'], 'exclude-patterns-encoded': ['1'] });
    // QueryEscape leaves only A-Za-z0-9-_.~ unescaped
    expect(encodeOpts({ k: ["é!'()*~"] }).k).toEqual(['%C3%A9%21%27%28%29%2A~']);
  });

  it('decodes what it encoded, after Node joined repeated header fields with ", "', () => {
    const values = ['héllo wörld', 'a,b', 'x y+z', 'plain'];
    const encoded = encodeOpts({ 'include-patterns': values });
    const joined = { 'include-patterns': [encoded['include-patterns']!.join(', ')], 'include-patterns-encoded': ['1'] };
    expect(decodeOpts(joined)['include-patterns']).toEqual(values);
    expect(decodeOpts({ 'dir-name': ['context'] })).toEqual({ 'dir-name': ['context'] });
    // A flag Go's strconv.ParseBool rejects leaves the values as sent; a malformed escape decodes to '' as in Go.
    expect(decodeOpts({ k: ['%C3%A9'], 'k-encoded': ['yes'] }).k).toEqual(['%C3%A9']);
    expect(decodeOpts({ k: ['%zz'], 'k-encoded': ['true'] }).k).toEqual(['']);
  });

  it('reads header maps in any case, from grpc-js metadata or raw HTTP/2 headers', () => {
    const map = headerMapOf({ ':path': '/x', 'X-Docker-Expose-Session-Grpc-Method': ['/a/B', '/c/D'], 'x-bin': Buffer.from('v') });
    expect(map).toEqual({ 'x-docker-expose-session-grpc-method': ['/a/B', '/c/D'], 'x-bin': ['v'] });
    expect(headerValues({ 'x-docker-expose-session-grpc-method': ['/a/B, /c/D'] }, 'X-Docker-Expose-Session-Grpc-Method')).toEqual(['/a/B', '/c/D']);
  });
});
