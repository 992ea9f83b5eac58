/**
 * The image config JSON (image-spec `config.json`) with Docker's extensions
 * (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`), as
 * moby/docker-image-spec's `DockerOCIImage`. Fields bkt does not know are
 * kept by whoever reads and rewrites a config; these types name the known ones.
 */
import type { Digest } from '@bkt/core';

/** An image config (`application/vnd.oci.image.config.v1+json`). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  config?: ImageRuntimeConfig;
  /** `type` is `layers`; `diff_ids` are the sha256 digests of the uncompressed layer tars, base first. */
  rootfs: { type: string; diff_ids: Digest[] };
  history?: ImageHistory[];
}

/** What a container of the image runs with (`config` of the image config). */
export interface ImageRuntimeConfig {
  User?: string;
  /** Keys `port/proto`; values are empty objects. */
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  /** Keys are paths; values are empty objects. */
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  Healthcheck?: HealthcheckConfig;
  OnBuild?: string[] | null;
  Shell?: string[];
}

/** Docker's `HEALTHCHECK`; durations in nanoseconds. */
export interface HealthcheckConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** One entry of an image's history; an entry with `empty_layer` made no layer. */
export interface ImageHistory {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}
