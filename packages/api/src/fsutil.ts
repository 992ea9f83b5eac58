/** File metadata as transferred by fsutil (proto package `fsutil.types`): `Stat`. */
export * from './gen/github.com/tonistiigi/fsutil/types/stat.js';
/** fsutil's transfer packets (`types/wire.proto`): `Packet` and its `Packet_PacketType` (STAT, REQ, DATA, FIN, ERR, …). */
export { Packet, Packet_PacketType, packet_PacketTypeFromJSON, packet_PacketTypeToJSON } from './gen/github.com/tonistiigi/fsutil/types/wire.js';
