// The built-in sample corpus: short original texts about patents and intellectual property,
// written for this package (not taken from any data set), so that `patentgpt pretrain` has IP
// text to train on with no data at hand. Three categories, as a mixture: "patent" (abstracts and
// claims of invented devices), "law" (plain explanations of IP concepts), "qa" (questions and
// answers). generate.ts adds templated patent text on top of these.

export interface SampleDocument {
  category: 'patent' | 'law' | 'qa';
  text: string;
}

export const SAMPLE_TEXTS: readonly SampleDocument[] = [
  {
    category: 'patent',
    text: `Title: Self-draining planter with a moisture-sensing base.
Abstract: A planter comprises an outer shell, an inner pot resting on a perforated shelf, and a reservoir below the shelf. A capacitive sensor in the base measures the water level in the reservoir and lights an indicator when the level falls below a threshold. An overflow channel leads excess water from the reservoir to a side outlet, so that the roots never stand in water.
Claims:
1. A planter comprising: an outer shell; a perforated shelf inside the shell; a reservoir below the shelf; a capacitive sensor arranged in the base of the shell to measure a water level in the reservoir; and an indicator that is lit when the measured level is below a threshold.
2. The planter of claim 1, further comprising an overflow channel that connects the reservoir to an outlet in a side wall of the shell.
3. The planter of claim 2, wherein the outlet is closed by a removable plug.`,
  },
  {
    category: 'patent',
    text: `Title: Bicycle lock with a retractable steel cable.
Abstract: A lock body houses a spring-loaded drum on which a braided steel cable is wound. Pulling the cable unwinds it against the spring; inserting its free end into a socket of the body engages a latch. A combination wheel releases the latch. When released, the spring winds the cable back into the body.
Claims:
1. A lock comprising: a body; a drum rotatably mounted in the body and biased by a spring in a winding direction; a cable wound on the drum and having a free end; a socket in the body that receives the free end; a latch that holds the free end in the socket; and a combination mechanism that releases the latch.
2. The lock of claim 1, wherein the cable is a braided steel cable covered by a polymer sleeve.
3. The lock of claim 1 or 2, wherein the body has a clip for attachment to a frame tube.`,
  },
  {
    category: 'patent',
    text: `Title: Method of scheduling battery charging for a fleet of delivery robots.
Abstract: A server receives, for each robot of a fleet, a state of charge and a planned route. It estimates the energy needed for each route, ranks the robots by the time at which their charge would fall below a reserve, and assigns charging slots at docking stations in that order, so that no robot starts a route it cannot finish and the number of robots charging at once never exceeds the number of docks.
Claims:
1. A computer-implemented method comprising: receiving a state of charge and a planned route for each of a plurality of robots; estimating an energy demand of each planned route; determining, for each robot, a time at which its state of charge would fall below a reserve level; and assigning charging slots at a plurality of docking stations in the order of the determined times.
2. The method of claim 1, wherein the number of robots assigned to overlapping charging slots does not exceed the number of docking stations.
3. A system comprising a processor and a memory storing instructions that, when executed, cause the processor to perform the method of claim 1.`,
  },
  {
    category: 'patent',
    text: `Title: Kitchen scale with a removable bowl and nutrient lookup.
Abstract: A kitchen scale includes a load cell, a display, and a wireless module. The user selects a food type on a paired phone; the scale reports the weight, and the phone computes energy and nutrient values from a stored table. The bowl is held by magnets and can be removed for washing without disturbing the calibration.
Claims:
1. A scale comprising a base with a load cell, a bowl detachably held on the base by magnets, a display, and a wireless module that transmits a measured weight to a paired device.
2. The scale of claim 1, wherein the paired device computes a nutrient value from the measured weight and a selected food type.`,
  },
  {
    category: 'law',
    text: `What a patent protects. A patent gives its owner the right to stop others from making, using, selling or importing the claimed invention for a limited time, usually twenty years from the filing date. In exchange, the applicant must describe the invention clearly enough that a skilled person could carry it out. The protection is defined by the claims, not by the drawings or the description: a product infringes only if it has every feature of at least one claim. The description helps to interpret the words of the claims, but it cannot add features that the claims do not recite.`,
  },
  {
    category: 'law',
    text: `Novelty and inventive step. An invention is new when no single earlier disclosure, anywhere in the world and in any form, shows all of its claimed features. Being new is not enough: the invention must also not be obvious to a person skilled in the field, given everything that was public before the filing date. Examiners often reason from the closest earlier document, identify what the claim adds to it, ask what technical problem that difference solves, and then consider whether the earlier art would have prompted the skilled person to make the change. Combining two known documents is obvious only when something would have led the skilled person to combine them.`,
  },
  {
    category: 'law',
    text: `Priority and the grace period. An applicant who files first in one country may file in other countries within twelve months and claim the date of the first filing. During that year, a publication by others does not destroy the novelty of the later applications. Some offices also forgive an inventor's own disclosures made shortly before filing, but the rules differ between countries, so the safest course is to file before any public presentation of the invention.`,
  },
  {
    category: 'law',
    text: `Trademarks, copyright and trade secrets. A trademark protects a sign that tells customers who makes a product; it can last as long as the mark is used and renewed. Copyright protects the expression of a work, such as a text, a drawing or a program, but not the idea behind it, and it arises without registration. A trade secret protects valuable information that is kept confidential; it lasts as long as the secret is kept, but it gives no right against someone who finds the same information independently or by studying a product bought on the market.`,
  },
  {
    category: 'law',
    text: `Reading a claim. A claim is one sentence with a preamble, a transitional word and a body. "Comprising" leaves the claim open: a product with extra parts still falls within it. "Consisting of" closes it: extra parts take the product outside. A dependent claim refers to an earlier claim and adds features, so it is always narrower than the claim it depends on. When a granted independent claim is attacked, the dependent claims are fallback positions that may survive.`,
  },
  {
    category: 'qa',
    text: `Question: Can I patent an idea that I have not built yet?
Answer: Yes, a working prototype is not required. What is required is a description that enables a skilled person to carry out the invention, and claims that define it. An idea described only as a wish, without any way to achieve it, is not enough.`,
  },
  {
    category: 'qa',
    text: `Question: My competitor's product differs from my claim in one feature. Do they infringe?
Answer: Not literally, because every feature of a claim must be present. Many courts also consider equivalents: a feature that performs substantially the same function in substantially the same way to obtain the same result may count as present. Whether that doctrine applies, and how broadly, depends on the country and on what was said during examination.`,
  },
  {
    category: 'qa',
    text: `Question: What is the difference between an independent and a dependent claim?
Answer: An independent claim stands on its own and defines the broadest protection sought. A dependent claim refers back to another claim and adds at least one feature. Dependent claims narrow the protection, but they give the owner fallback positions if the broad claim turns out to be invalid over earlier art.`,
  },
  {
    category: 'qa',
    text: `Question: How long does a patent last, and can it be extended?
Answer: Usually twenty years from the filing date, provided the renewal fees are paid each year. Some countries grant a limited extension for medicines and plant protection products, to make up for the years spent waiting for marketing approval. Other patents cannot be extended; once they expire, anyone may use the invention.`,
  },
  {
    category: 'qa',
    text: `Question: What does a patent classification code tell me?
Answer: It places the invention in a hierarchy of technical fields, from a broad section down to a narrow group. Examiners and searchers use the codes to find earlier documents about the same kind of technology, whatever words those documents use. A single application often receives several codes, one for each aspect of the invention.`,
  },
];
