/** BuildKit's session SSH agent forwarding (proto package `moby.sshforward.v1`): service `SSH` (CheckAgent, ForwardAgent), served by a session's client. */
export * from './gen/github.com/moby/buildkit/session/sshforward/ssh.js';
