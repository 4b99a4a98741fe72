// Swoft-style controller: {"cmd":"echo.send","data":X,"ref":N} → {"cmd":"echo.send","data":X,"ref":N}.
import { MessageMapping, WsController } from '../swoft.js';

@WsController('echo')
export class EchoController {
  /** echo.send: the data back, as is. */
  @MessageMapping()
  send(data: unknown): unknown {
    return data;
  }

  /** echo.upper: a string, upper-cased. */
  @MessageMapping('upper')
  toUpper(data: unknown): unknown {
    return typeof data === 'string' ? data.toUpperCase() : { error: 'echo.upper wants a string' };
  }
}
