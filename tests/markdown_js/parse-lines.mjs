// Reads one JSON string per line on stdin; writes the message parser's AST of each as one JSON line.
// Every optional syntax is switched on (KaTeX both ways, colors, emoticons): the strictest reading.
import * as parser from '@rocket.chat/message-parser';
import { createInterface } from 'node:readline';

const options = { colors: true, emoticons: true, katex: { dollarSyntax: true, parenthesisSyntax: true } };
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = { ast: parser.parse(JSON.parse(line), options) };
  } catch (error) {
    answer = { error: String(error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
