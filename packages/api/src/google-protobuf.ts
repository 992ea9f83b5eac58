/** Proto package `google.protobuf`: the well-known types referenced by bkt's protos. */
export { Any } from './gen/google/protobuf/any.js';
export { Timestamp } from './gen/google/protobuf/timestamp.js';
