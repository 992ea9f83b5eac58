/** Types of scripts/generate.mjs, for the package's tests. */
export declare const TS_PROTO_OPTIONS: string[];
/** Absolute path of the protoc binary shipped by the `protoc` npm package. */
export declare function protocPath(): string;
/** Include path holding google/protobuf/*.proto. */
export declare function protocIncludeDir(): string;
/** The repository's proto/ directory (protoc's main include path). */
export declare function protoRootDir(): string;
/** All .proto files under proto/, relative to it, sorted. */
export declare function protoFiles(dir?: string): string[];
/** Regenerates the TypeScript into outDir (default src/gen), emptying it first; returns outDir. */
export declare function generate(outDir?: string): string;
