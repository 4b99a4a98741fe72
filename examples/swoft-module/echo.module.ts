// Swoft-style module on /echo (JSON {cmd, data, ref} parser), one controller.
import { WsModule, wsModule } from './swoft.js';
import { EchoController } from './controllers/echo.controller.js';

@WsModule({ path: '/echo', controllers: [EchoController], messageParser: 'json' })
class EchoModule {}

export default wsModule(EchoModule);
