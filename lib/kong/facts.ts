import type { KongFacts } from '../context';
import type { KongPDK } from './pdk';

/** Which Kong facts a plugin's config uses; each costs one PDK round trip in the access phase. */
export interface FactNeeds {
  consumer?: boolean;
  credential?: boolean;
  route?: boolean;
  service?: boolean;
}

/** Asks Kong for exactly the facts `needs` names, one call each, nothing else. */
export async function gatherFacts(pdk: KongPDK, needs: FactNeeds): Promise<KongFacts> {
  const facts: KongFacts = {};
  if (needs.consumer) {
    const c = await pdk.client.getConsumer();
    if (c?.id) {
      facts.consumer = {
        id: c.id,
        ...(c.username ? { username: c.username } : {}),
        ...(c.tags ? { tags: c.tags } : {}),
      };
    }
  }
  if (needs.credential) {
    const c = await pdk.client.getCredential();
    if (c?.id) facts.credentialId = c.id;
  }
  if (needs.route) facts.routeId = (await pdk.router.getRoute())?.id;
  if (needs.service) facts.serviceId = (await pdk.router.getService())?.id;
  return facts;
}
