/**
 * omnirecon change notifications from NetSuite (user-event script, afterSubmit).
 *
 * Deploy on: Inventory Item, Inventory Adjustment, Inventory Transfer, Item Receipt, Sales Order, Item Fulfillment.
 * Deployment parameters:
 *   custscript_omnirecon_url        (Free-Form Text) omnirecon receiver, e.g. https://recon.example.com/notifications/erp
 *   custscript_omnirecon_secret_id  (Free-Form Text) script ID of the API Secret holding the shared secret
 *                                   (Setup > Company > API Secrets, e.g. custsecret_omnirecon)
 * Each change is POSTed as JSON:
 *   {eventId, recordType, id, type: create|edit|delete, timestamp, items: [{item, itemId, location, locationId,
 *    quantityOnHand, quantityCommitted, quantityAvailable}], salesOrder?: {id, tranId, status, otherRefNum, channel,
 *    lines: [{item, quantity, quantityFulfilled, location}]} (sales orders and fulfilments), createdFrom? (fulfilments)}
 * with X-Omnirecon-Timestamp: <unix seconds> and
 *      X-Omnirecon-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>.
 * eventId (a UUID made once per message) is what the receiver de-duplicates on. A post that gets no 2xx (receiver
 * down, 5xx, timeout) is kept in the outbox custom record and retried, re-signed, by omnirecon_retry_mr.js, whose
 * run afterSubmit requests (omnirecon_outbox.js); the user's save is never blocked or failed by any of it.
 *
 * @NApiVersion 2.1
 * @NScriptType UserEventScript
 * @NModuleScope SameAccount
 */
define(['N/runtime', 'N/search', 'N/record', 'N/log', 'N/crypto/random', './omnirecon_outbox'],
    (runtime, search, record, log, random, outbox) => {

        const LINE_SUBLISTS = {
            inventoryadjustment: 'inventory', inventorytransfer: 'inventory', itemreceipt: 'item',
            itemfulfillment: 'item', salesorder: 'item'
        };

        const changeType = (context) => {
            const t = context.type;
            if (t === context.UserEventType.CREATE) return 'create';
            if (t === context.UserEventType.DELETE) return 'delete';
            return 'edit';
        };

        // (item internal id, location internal id) pairs the record touches
        const touched = (rec) => {
            const pairs = [];
            if (rec.type === 'inventoryitem') {
                pairs.push({itemId: String(rec.id), locationId: null});
                return pairs;
            }
            const sublist = LINE_SUBLISTS[rec.type];
            const n = sublist ? rec.getLineCount({sublistId: sublist}) : 0;
            for (let i = 0; i < n; i++) {
                const itemId = rec.getSublistValue({sublistId: sublist, fieldId: 'item', line: i});
                const loc = rec.getSublistValue({sublistId: sublist, fieldId: 'location', line: i})
                    || rec.getValue({fieldId: 'location'});
                if (itemId) pairs.push({itemId: String(itemId), locationId: loc ? String(loc) : null});
                if (rec.type === 'inventorytransfer' && rec.getValue({fieldId: 'transferlocation'})) {
                    pairs.push({itemId: String(itemId), locationId: String(rec.getValue({fieldId: 'transferlocation'}))});
                }
            }
            return pairs;
        };

        // quantities per location after the change, read back from the item records
        const quantities = (pairs) => {
            if (!pairs.length) return [];
            const wanted = {};
            pairs.forEach((p) => { wanted[p.itemId + ':' + (p.locationId || '*')] = true; });
            const out = [];
            search.create({
                type: search.Type.ITEM,
                filters: [['internalid', 'anyof', [...new Set(pairs.map((p) => p.itemId))]]],
                columns: ['itemid', 'inventorylocation', 'locationquantityonhand', 'locationquantitycommitted',
                    'locationquantityavailable']
            }).run().each((r) => {
                const locationId = String(r.getValue({name: 'inventorylocation'}) || '');
                if (wanted[r.id + ':' + locationId] || wanted[r.id + ':*']) {
                    const onHand = Number(r.getValue({name: 'locationquantityonhand'}) || 0);
                    const committed = Number(r.getValue({name: 'locationquantitycommitted'}) || 0);
                    out.push({
                        item: r.getValue({name: 'itemid'}), itemId: Number(r.id),
                        location: r.getText({name: 'inventorylocation'}), locationId: Number(locationId),
                        quantityOnHand: onHand, quantityCommitted: committed, quantityAvailable: onHand - committed
                    });
                }
                return true;
            });
            return out;
        };

        const salesOrderOf = (rec) => {
            const n = rec.getLineCount({sublistId: 'item'});
            const lines = [];
            for (let i = 0; i < n; i++) {
                lines.push({
                    item: rec.getSublistText({sublistId: 'item', fieldId: 'item', line: i}),
                    quantity: Number(rec.getSublistValue({sublistId: 'item', fieldId: 'quantity', line: i}) || 0),
                    quantityFulfilled: Number(rec.getSublistValue({sublistId: 'item', fieldId: 'quantityfulfilled', line: i}) || 0),
                    location: rec.getSublistText({sublistId: 'item', fieldId: 'location', line: i})
                        || rec.getText({fieldId: 'location'})
                });
            }
            return {
                id: Number(rec.id), tranId: rec.getValue({fieldId: 'tranid'}), status: rec.getValue({fieldId: 'orderstatus'}),
                otherRefNum: rec.getValue({fieldId: 'otherrefnum'}),
                channel: rec.getValue({fieldId: 'custbody_omnirecon_channel'}) || null, lines: lines
            };
        };

        const afterSubmit = (context) => {
            const script = runtime.getCurrentScript();
            const url = script.getParameter({name: 'custscript_omnirecon_url'});
            const secretId = script.getParameter({name: 'custscript_omnirecon_secret_id'});
            if (!url || !secretId) return;
            const type = changeType(context);
            const rec = type === 'delete' ? context.oldRecord : context.newRecord;
            let message;
            try {
                message = {
                    eventId: random.generateUUID(), recordType: rec.type, id: Number(rec.id), type: type,
                    timestamp: new Date().toISOString(), items: type === 'delete' ? [] : quantities(touched(rec))
                };
                if (rec.type === 'salesorder') message.salesOrder = salesOrderOf(rec);
                if (rec.type === 'itemfulfillment') {
                    message.createdFrom = Number(rec.getValue({fieldId: 'createdfrom'}));
                    message.salesOrder = salesOrderOf(record.load({type: record.Type.SALES_ORDER, id: message.createdFrom}));
                }
            } catch (e) {   // never block the user's save; the reconcile still catches the drift
                log.error({title: 'omnirecon notification not built', details: rec.type + ' ' + rec.id + ': ' + e.message});
                return;
            }
            const body = JSON.stringify(message);
            const sent = outbox.post(url, secretId, body);
            try {
                if (sent.ok) {
                    outbox.flushIfQueued();              // the receiver answers again: retry the outbox now
                    return;
                }
                log.error({title: 'omnirecon notification failed, queued for retry',
                    details: rec.type + ' ' + rec.id + ' ' + message.eventId + ': ' + sent.error});
                outbox.queue({eventId: message.eventId, body: body, url: url, secretId: secretId, error: sent.error});
                outbox.markQueued();
                outbox.requestRetry(false);
            } catch (e) {
                log.error({title: 'omnirecon notification lost', details: rec.type + ' ' + rec.id + ' ' +
                        message.eventId + ': ' + e.message});
            }
        };

        return {afterSubmit};
    });
