// Proof that Rocket.Chat's official DDP client talks to the sandbox.
//
//   node --experimental-websocket receive-message.mjs <server url> <resume token> <room id>
//
// Connects, logs in with the resume token, subscribes to `stream-room-messages` for the room and
// prints one JSON line per step on stdout: {"event":"ready",...} once the subscription is ready,
// then {"event":"message","message":{...}} for the first message the stream delivers, and exits 0.
// Any failure exits non-zero with the reason on stderr.
import { DDPSDK } from '@rocket.chat/ddp-client';

const [url, token, roomId] = process.argv.slice(2);
if (!url || !token || !roomId) {
  console.error('usage: receive-message.mjs <server url> <resume token> <room id>');
  process.exit(64);
}
if (typeof WebSocket === 'undefined') {
  console.error('this node has no global WebSocket: use node >= 22 or --experimental-websocket');
  process.exit(69);
}

const timer = setTimeout(() => {
  console.error('no message within 30 s');
  process.exit(3);
}, 30_000);

try {
  const sdk = await DDPSDK.createAndConnect(url);
  const login = await sdk.account.loginWithToken(token);
  const stream = sdk.stream('room-messages', roomId, (message) => {
    console.log(JSON.stringify({ event: 'message', message }));
    clearTimeout(timer);
    stream.stop();
    sdk.connection.close();
    process.exit(0);
  });
  await stream.ready();
  console.log(JSON.stringify({ event: 'ready', userId: login.id, tokenExpires: login.tokenExpires }));
} catch (error) {
  console.error('ddp-client failed:', error instanceof Error ? error.message : JSON.stringify(error));
  process.exit(1);
}
