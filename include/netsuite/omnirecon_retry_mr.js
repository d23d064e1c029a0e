/**
 * omnirecon notification retries (Map/Reduce): posts the messages omnirecon_ue.js could not deliver, from the
 * outbox custom record (customrecord_omnirecon_outbox, omnirecon_outbox.js).
 *
 * Deployments: customdeploy_omnirecon_retry_mr (Not Scheduled), which afterSubmit submits after a failed post and,
 * with custscript_omnirecon_retry_flush, after a successful post while messages were queued (the receiver is back:
 * take every queued message, due or not); customdeploy_omnirecon_retry_sched (Scheduled, every 15 minutes), the
 * safety net. Each run takes the messages that are due and not failed, posts each one re-signed with the current
 * timestamp (the body is unchanged: same eventId, so the receiver stores it once even if an earlier attempt did
 * arrive), deletes it on a 2xx, else counts the attempt and sets the next one by the backoff; a message older than
 * 72 h is marked failed (kept, and logged, for an administrator) instead.
 *
 * @NApiVersion 2.1
 * @NScriptType MapReduceScript
 * @NModuleScope SameAccount
 */
define(['N/search', 'N/record', 'N/runtime', 'N/log', './omnirecon_outbox'],
    (search, record, runtime, log, outbox) => {
        const F = outbox.FIELDS;

        const getInputData = () => {
            const flush = runtime.getCurrentScript().getParameter({name: outbox.FLUSH_PARAMETER});
            const filters = [[F.failed, 'is', 'F']];
            if (!flush || flush === 'F') filters.push('AND', [F.nextAt, 'lessthanorequalto', outbox.nowSeconds()]);
            return search.create({type: outbox.RECORD, filters: filters, columns: [F.eventId]});
        };

        const map = (context) => {
            const id = context.key;
            let rec;
            try {
                rec = record.load({type: outbox.RECORD, id: id});
            } catch (e) {
                return;                                  // another run delivered it meanwhile
            }
            const eventId = rec.getValue({fieldId: F.eventId});
            const sent = outbox.post(rec.getValue({fieldId: F.url}), rec.getValue({fieldId: F.secretId}),
                rec.getValue({fieldId: F.body}));
            if (sent.ok) {
                record.delete({type: outbox.RECORD, id: id});
                context.write({key: 'delivered', value: eventId});
                return;
            }
            const attempts = Number(rec.getValue({fieldId: F.attempts}) || 0) + 1;
            const now = outbox.nowSeconds();
            const gaveUp = now - Number(rec.getValue({fieldId: F.firstAt}) || now) >= outbox.MAX_AGE_S;
            rec.setValue({fieldId: F.attempts, value: attempts});
            rec.setValue({fieldId: F.lastError, value: String(sent.error).slice(0, 300)});
            if (gaveUp) {
                rec.setValue({fieldId: F.failed, value: true});
                log.error({title: 'omnirecon notification given up', details: eventId + ' after ' + attempts +
                        ' attempts: ' + sent.error + ' (outbox record ' + id + ')'});
            } else {
                rec.setValue({fieldId: F.nextAt, value: now + outbox.backoffSeconds(attempts)});
            }
            try {
                rec.save();
            } catch (e) {
                log.debug({title: 'omnirecon outbox record not updated', details: id + ': ' + e.message});
            }
            context.write({key: gaveUp ? 'failed' : 'queued', value: eventId});
        };

        const summarize = (summary) => {
            const counts = {delivered: 0, queued: 0, failed: 0};
            summary.output.iterator().each((key) => {
                counts[key] = (counts[key] || 0) + 1;
                return true;
            });
            summary.mapSummary.errors.iterator().each((key, error) => {
                log.error({title: 'omnirecon retry error', details: 'outbox record ' + key + ': ' + error});
                return true;
            });
            log.audit({title: 'omnirecon retries', details: JSON.stringify(counts)});
        };

        return {getInputData, map, summarize};
    });
