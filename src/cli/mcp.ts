import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { createApp } from '../app.js';
import { ConfigError, type Config } from '../config.js';
import { ForbiddenError } from '../engine/errors.js';
import type { Logger } from '../logger.js';
import { createMcpServer } from '../mcp/server.js';

/**
 * `action-engine mcp`: the MCP server over stdio for one API key (ACTION_ENGINE_API_KEY). It
 * talks to PostgreSQL and Redis itself, like `serve` (same configuration), and runs every tool
 * through the same engine functions with the key's principal; executions are run by the
 * deployment's workers. stdout carries the protocol only: the logger writes to stderr.
 */
export async function runMcpStdio(config: Config, logger: Logger): Promise<void> {
  if (!config.mcpApiKey) {
    throw new ConfigError('ACTION_ENGINE_API_KEY is not set: `action-engine mcp` acts with that API key (create one with `action-engine keys create --role agent …`)');
  }
  const authorization = `Bearer ${config.mcpApiKey}`;
  const app = await createApp(config, logger, { migrate: false, sweepExpiredApprovals: false });
  let identity;
  try {
    identity = await app.auth.identify(authorization);
  } catch (error) {
    await app.close();
    throw error;
  }
  if (!identity) {
    await app.close();
    throw new ConfigError('ACTION_ENGINE_API_KEY is not a valid API key (unknown, revoked or malformed)');
  }
  const server = createMcpServer(app, {
    // Checked again for every request: a key revoked while the session runs stops working
    // within seconds (at once when the revocation announcement on Redis arrives).
    async principal() {
      const current = await app.auth.identify(authorization);
      if (!current) throw new ForbiddenError('the API key in ACTION_ENGINE_API_KEY is no longer valid (revoked or disabled)');
      return current.principal;
    },
    ip: null,
    userAgent: null,
  });
  const transport = new StdioServerTransport();
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ why }, 'MCP server (stdio) stopping');
    try {
      await server.close();
      await app.close();
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'error while stopping the MCP server');
      process.exit(1);
    }
  };
  transport.onclose = () => void stop('transport closed');
  // The client closing our stdin is how a stdio session ends.
  process.stdin.once('end', () => void stop('stdin closed'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  await server.connect(transport);
  logger.info({ role: identity.principal.role, principal: identity.principal.id }, 'Action Engine MCP server running on stdio');
}
