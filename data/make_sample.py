#!/usr/bin/env python3
# ruff: noqa: E501  (one template per line, some are long)
"""Generate the synthetic French medico-social NER sample corpus in ``data/`` (all made up).

Hand-written templates with entity slots are filled from hand-written name lists by a fixed-seed
``random.Random`` (byte-identical output on every run).  Entity character spans are kept while the
text is built; the text is split with nerkd's own ``split_words`` and words get BIO tags by span
overlap, so tokens match what ``nerkd infer`` sees.  Conventions: titles (Mme, M., Dr) and leading
articles are outside entities; an organisation's full name is ORG, place included ("CCAS de Nantes",
"MDPH du Rhône"); streets are LOC with their type ("rue Victor-Hugo"), not the house number;
benefits (AAH, PCH, APA) and a bare "EHPAD" are not entities.

Run, from the repository root:  python data/make_sample.py

Unlabelled notes (a transfer set for distillation) come from a second random stream, so the
labelled files above stay byte-identical; a note equal to any labelled sentence is never kept:

    python data/make_sample.py --unlabeled 5000 --output unlabeled_5000.txt   # only that file
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from nerkd.data.words import split_words  # noqa: E402

SEED = 20261126
OUT = ROOT / "data"
N_TRAIN, N_DEV, N_TEST, N_TEXTS, N_SPANS, N_CONLL = 400, 80, 80, 34, 20, 20
N_UNLABELED = 500                              # data/unlabeled.txt
UNLABELED_SEED = f"{SEED}:unlabeled"          # its own stream: the labelled draws never move
MIN_WORDS, MAX_WORDS = 5, 45
LABEL2ID = {"O": 0, "B-LOC": 1, "I-LOC": 2, "B-ORG": 3, "I-ORG": 4, "B-PER": 5, "I-PER": 6}
ENT = ("PER", "LOC", "ORG")


def L(s: str) -> list[str]:
    return [" ".join(x.split()) for x in s.split(",") if x.strip()]


def T(s: str) -> list[tuple[str, ...]]:
    return [tuple(x.split("/")) for x in L(s)]


# ----------------------------------------------------------------------------- name lists
# fmt: off
FIRST_F = L("""Marie, Nathalie, Isabelle, Sylvie, Catherine, Martine, Monique, Françoise, Christiane, Jacqueline, Élodie,
Camille, Léa, Chloé, Manon, Inès, Fatima, Aïcha, Nadia, Yasmina, Samia, Khadija, Aminata, Fatoumata, Mariama, Linh,
Mai, Ana, Maria, Sofia, Agnieszka, Elif, Zeynep, Hélène, Geneviève, Odette, Paulette, Jeanne, Josiane, Brigitte,
Océane, Amandine, Awa, Leïla, Anne-Marie""")
FIRST_M = L("""Jean, Pierre, Michel, Philippe, Alain, Bernard, Jacques, Gérard, René, Marcel, André, Christophe, Julien,
Nicolas, Thomas, Lucas, Hugo, Mohamed, Karim, Rachid, Youssef, Mehdi, Samir, Ahmed, Mamadou, Moussa, Ibrahima, Oumar,
Minh, Duc, João, Manuel, Antonio, Kevin, Florian, Mathis, Théo, Jean-Pierre, Jean-Claude, Marc-Antoine, Yannick,
Loïc, Erwan, Mustafa, Emre, Bilal""")
LAST = L("""Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, Simon, Laurent, Lefebvre,
Michel, Garcia, David, Bertrand, Roux, Vincent, Fournier, Morel, Girard, Lefèvre, Mercier, Dupont, Lambert, Bonnet,
François, Martinez, Legrand, Garnier, Faure, Rousseau, Blanc, Guérin, Muller, Henry, Roussel, Perrin, Morin, Mathieu,
Clément, Gauthier, Dumont, Lopez, Fontaine, Chevalier, Robin, Nguyen, Tran, Pham, Le Goff, Kerbrat, Le Bihan, Benali,
Haddad, Boukhari, Belkacem, Mansouri, Cherif, Diallo, Traoré, Koné, Diop, N'Diaye, Ferreira, Da Silva, Dos Santos,
Pereira, Kowalski, Nowak, Yılmaz, Demir, Öztürk, Popescu, Cohen, Lévy, Weber, Schmitt, Mbappé, Rakotomalala""")
CHU_CITIES = L("""Lyon, Bordeaux, Nantes, Lille, Toulouse, Rennes, Grenoble, Montpellier, Nice, Dijon, Angers, Tours, Limoges,
Amiens, Brest, Rouen, Caen, Nancy, Poitiers, Reims, Saint-Étienne, Clermont-Ferrand, Besançon, Nîmes, Strasbourg,
Marseille, Metz, Orléans""")
OTHER_CITIES = L("""Villeurbanne, Vénissieux, Vaulx-en-Velin, Saint-Priest, Bron, Aix-en-Provence, Toulon, Perpignan, Mulhouse,
Argenteuil, Montreuil, Roubaix, Tourcoing, Avignon, Saint-Denis, Pau, Bayonne, Valence, Chambéry, Annecy, Créteil,
Aubervilliers, Villefranche-sur-Saône, Roanne, Bourg-en-Bresse, Quimper, Lorient, Béziers, Colmar, Évry-Courcouronnes""")
CITIES = CHU_CITIES + OTHER_CITIES
STREETS = L("""rue Victor-Hugo, avenue Jean-Jaurès, boulevard Gambetta, rue de la République, rue Paul-Bert, avenue du
Général-Leclerc, rue Pasteur, cours Lafayette, rue des Lilas, allée des Tilleuls, impasse des Acacias, chemin des
Vignes, rue Jules-Ferry, rue Garibaldi, boulevard de la Croix-Rousse, avenue Berthelot, rue Émile-Zola, rue
Anatole-France, rue du Moulin, place de la Mairie, route de Vienne, rue Marcel-Pagnol, avenue Salvador-Allende, rue
Jean-Moulin, rue de l'Église, boulevard Voltaire, quai Claude-Bernard, rue Lamartine, rue du 8-Mai-1945""")
# (name, "de" form, "in" form, number)
DEPTS = T("""Rhône/du/dans le/69, Gironde/de la/en/33, Isère/de l'/en/38, Bouches-du-Rhône/des/dans les/13, Nord/du/dans
le/59, Loire/de la/dans la/42, Haute-Garonne/de la/en/31, Puy-de-Dôme/du/dans le/63, Seine-Saint-Denis/de la/en/93,
Val-de-Marne/du/dans le/94, Hérault/de l'/dans l'/34, Finistère/du/dans le/29, Loire-Atlantique/de la/en/44,
Bas-Rhin/du/dans le/67, Moselle/de la/en/57, Pas-de-Calais/du/dans le/62, Ain/de l'/dans l'/01, Savoie/de la/en/73,
Alpes-Maritimes/des/dans les/06, Var/du/dans le/83, Somme/de la/dans la/80, Essonne/de l'/en/91, Calvados/du/dans
le/14, Vienne/de la/dans la/86, Ille-et-Vilaine/de l'/en/35, Drôme/de la/dans la/26, Haute-Savoie/de la/en/74,
Pyrénées-Atlantiques/des/dans les/64""")
REGIONS = T("""Auvergne-Rhône-Alpes/en, Nouvelle-Aquitaine/en, Occitanie/en, Bretagne/en, Hauts-de-France/dans les,
Île-de-France/en, Grand Est/dans le, Provence-Alpes-Côte d'Azur/en, Normandie/en, Bourgogne-Franche-Comté/en, Pays de
la Loire/dans les, Centre-Val de Loire/en""")
QUARTIERS = T("""de la/Duchère, des/Minguettes, du/Mirail, de/Belleville, de/Montchat, de la/Guillotière, du/Neuhof, de/Bellevue,
de/Malakoff, du/Blosne, de/Wazemmes, de/Moulins, de la/Paillade, de/Hautepierre, de la/Villeneuve, des/Tarterêts,
du/Mas-du-Taureau, de/Vaise, de/Montreynaud, de la/Croix-Rousse, des/Grésillons, du/Val-Fourré, des/Aubiers,
de/Bacalan""")
PAYS = T("""du/Mali, du/Sénégal, d'/Algérie, du/Maroc, de/Tunisie, du/Portugal, du/Viêt Nam, du/Cameroun, des/Comores,
de/Turquie, de/Roumanie, de/Côte d'Ivoire, d'/Haïti, de/Guinée, d'/Afghanistan, de/Syrie, d'/Ukraine, du/Cambodge,
de/République démocratique du Congo""")
HOPITAUX = L("""Hôpital Édouard-Herriot, Hôpital de la Croix-Rousse, Hôpital Lyon Sud, Hôpital Pellegrin, Hôpital de la Timone,
Hôpital Purpan, Hôpital Bichat-Claude-Bernard, Hôpital Lariboisière, Hôpital Saint-Louis, Hôpital Avicenne, Hôpital
Henri-Mondor, Hôpital Bellevue, Hôpital Gabriel-Montpied, Hôpital Pontchaillou, Hôpital Roger-Salengro, Hôpital Nord
Laënnec, Hôpital Pierre-Wertheimer, Hôpital Femme Mère Enfant""")
EHPADS = L("""EHPAD Les Tilleuls, EHPAD Les Glycines, EHPAD La Roseraie, EHPAD Le Clos Fleuri, EHPAD Résidence du Parc, EHPAD
Les Jardins d'Automne, EHPAD Saint-Joseph, EHPAD Villa Sainte-Marie, EHPAD Les Opalines, EHPAD Le Bois Joli, EHPAD
Marie-Curie, EHPAD Les Magnolias, EHPAD Korian Les Lilas, EHPAD La Maison du Lac, EHPAD Les Hortensias, EHPAD
Notre-Dame, EHPAD Les Cèdres, EHPAD Jean-Rostand""")
ASSOS = T("""la/Croix-Rouge française, le/Secours populaire, le/Secours populaire français, le/Secours catholique, les/Restos
du Cœur, /Emmaüs, /Habitat et Humanisme, les/Petits Frères des Pauvres, /APF France handicap, la/Armée du Salut,
/France Alzheimer, la/Fondation Abbé-Pierre, le/Samu social, la/UNAFAM, /Médecins du Monde""")
BAILLEURS = L("""Grand Lyon Habitat, Lyon Métropole Habitat, Est Métropole Habitat, Paris Habitat, Nantes Métropole Habitat,
Habitat 76, Vilogia, ICF Habitat, Logirep, Gironde Habitat, Aquitanis, Toulouse Métropole Habitat, Archipel Habitat,
Loire Habitat, Alliade Habitat, Dynacité""")
SAADS = L("O2 Care Services, Age d'Or Services, Shiva, Domidom, Vitalliance, Petits-fils, Adhap Services")
CARSATS = L("""Carsat Rhône-Alpes, Carsat Aquitaine, Carsat Bretagne, Carsat Hauts-de-France, Carsat Sud-Est, Carsat Normandie,
Carsat Midi-Pyrénées, Carsat Pays de la Loire, Carsat Auvergne""")
ENTREPRISES = L("Renault, Michelin, la SNCF, Airbus, Carrefour, Auchan, Stellantis, Decathlon, Veolia, Lactalis")
MOIS = L("janvier, février, mars, avril, mai, juin, juillet, août, septembre, octobre, novembre, décembre")
JOURS = L("lundi, mardi, mercredi, jeudi, vendredi, lundi prochain, jeudi prochain")

# ----------------------------------------------------------------------------- templates
TEMPLATES = [t.strip() for t in """
Visite à domicile effectuée ce jour chez {pt}, {agev} ans, qui vit seul{e} au {num} {rue} à {ville}.
Visite à domicile effectuée.
Pas de visite cette semaine.
Appel de {pt} ce matin.
Appel de {prf}, la fille de {ptf}, inquiète de la perte d'autonomie de sa mère.
{pt} sollicite une aide financière exceptionnelle auprès de {ccas}.
Mise en place d'un portage de repas par {ccas} à compter du {date}.
Domiciliation administrative au {ccas!} en attente de justificatifs.
RDV avec {pt} au {ccas!} le {date} à {heure}.
Entretien avec {pt} et son fils {prm} au {ccas!} pour faire le point sur les dettes de loyer.
Réunion de synthèse au {ccas!} avec {pt}, {pt} et le {dr}.
Demande d'AAH et de PCH déposée auprès de {mdph} le {date}.
{pt} a obtenu une carte mobilité inclusion délivrée par {mdph}.
Dossier MDPH incomplet : certificat médical à faire compléter par le médecin traitant.
Taux d'incapacité de {taux} reconnu par la CDAPH de {mdph} pour {pn}.
Demande de renouvellement de l'AAH à déposer avant le {date}.
{pn} attend depuis {n} mois la réponse de {mdph} pour son orientation en ESAT.
{pt} perçoit le RSA et l'APL versés par {caf}.
Courrier envoyé à {caf} pour régulariser un trop-perçu de {montant}.
Ouverture des droits à la complémentaire santé solidaire en cours auprès de {cpam}.
Permanence de l'assistante sociale de {cpam} le {jour} matin à {ville}.
Dossier de retraite transmis à {carsat} ; {pt} attend la notification de pension.
Aucune ressource déclarée depuis {mois}, les droits RSA sont suspendus.
Sortie d'hospitalisation de {pt} prévue le {date} depuis {chu}.
{pt} a été hospitalisé{e} à {hopital} après une chute dans son appartement de {ville}.
Chute à domicile le {date} ; {pt} a été transporté{e} aux urgences de {hopital}.
Appel du service social de {chu} : la sortie de {pt} est repoussée au {date}.
{dr}, gériatre au {chu!}, préconise une entrée en EHPAD à court terme.
Déménagement de {pt} prévu fin {mois}, de {ville} vers un logement adapté {dep_in}.
Transport sanitaire organisé entre {hopital} et {ehpad} pour {pt}.
Compte rendu de sortie reçu : {pt} a été suivi{e} en cardiologie à {hopital} par le {dr}.
Rendez-vous fixé le {date} à {heure} avec le {dr} au {cmp!}.
Hospitalisation de {pn} au {chu!} à la demande d'un tiers, son frère {prm}.
Admission à {ehpad} envisagée pour {pt}, évalué{e} en GIR {gir}.
{pt} a été accueilli{e} en hébergement temporaire à {ehpad} pendant l'hospitalisation de son conjoint à {hopital}.
Recherche de places en EHPAD sur le secteur de {ville} et plus largement {region_in}.
Visite de pré-admission à {ehpad} le {date} avec {pt} et sa nièce {prf}.
Demande d'aide sociale à l'hébergement adressée à {cd} pour {pt}.
Monsieur refuse l'entrée en établissement.
Madame est très isolée et ne sort plus de chez elle depuis plusieurs mois.
{Ssiad} intervient deux fois par jour pour les soins d'hygiène de {pt}.
Rencontre avec {pn} du {ssiad!} au sujet du plan d'aide, à {ville}.
Prise en charge par {ssiad} interrompue le temps de l'hospitalisation au {chu!}.
{Admr} assure {n} heures d'aide à domicile par mois chez {pt}.
Ménage et courses assurés par une aide à domicile de {admr} trois fois par semaine.
{pt} refuse toute aide à domicile malgré l'avis de son médecin.
Plan d'aide APA révisé : {n} heures mensuelles d'aide humaine.
Intervention de l'infirmière libérale matin et soir.
Bilan ergothérapique à programmer avant l'aménagement de la salle de bain, {jour}.
{Cd} finance l'APA à domicile de {pt} à hauteur de {montant} par mois.
Coordination assurée par {clic} pour le retour à domicile de {pt} à {ville}.
Prestataire {saad} mandaté pour l'aide au lever et au coucher de {pt}.
Le dossier de {pn} a été transmis à {mjpm} en vue d'une mesure de curatelle renforcée.
Le juge des tutelles de {ville} a désigné {mjpm} comme mandataire de {pt}.
La curatelle renforcée de {pt} est exercée par {pn}, mandataire judiciaire à {mjpm}.
Appel de {mjpm} : le budget de {pt} ne permet plus de régler la facture de {ehpad}.
Requête en habilitation familiale déposée au {tj!} par {pt}.
Signalement transmis à {ars} concernant les conditions d'accueil à {ehpad}.
Inspection de {ars} prévue à {ehpad}, {num} {rue} à {ville}, le {date}.
Évaluation GIR réalisée au domicile de {pt} par l'équipe médico-sociale du {cd!}.
Orientation vers {asso} pour une aide alimentaire d'urgence.
Accompagnement de {pn} à la permanence de {asso} à {ville}.
Colis alimentaire remis par {asso} à {ville} ; prochain passage {jour}.
Famille originaire {pays} arrivée à {ville} en {annee}, hébergée par le 115.
{ptm} est originaire {pays} et réside en [France|LOC] depuis {n} ans.
Famille hébergée au {num} {rue}, dans le quartier {quartier}, à {ville}.
{pt} vit dans un logement insalubre du quartier {quartier} et un signalement a été fait au service d'hygiène de {ville}.
Relance de la demande de logement social auprès de {bailleur} pour un T2 à {ville}, si possible dans le quartier {quartier}.
Le couple {nom} a été relogé par {bailleur} dans un T3 à {ville}.
M. et Mme {nom} ont sollicité une aide éducative auprès de {mds}.
Suivi PMI de l'enfant de {pnf} assuré par {pmi}.
{pt} est inscrit{e} à [France Travail|ORG] depuis {mois} et accompagné{e} par {misloc}.
{ptm} travaillait comme ouvrier chez {entreprise} à {ville} avant son accident du travail.
Dossier de surendettement déposé auprès de la [Banque de France|ORG] avec l'aide de {pt}.
La famille a quitté {ville} pour s'installer {dep_in}, près de {ville}.
Le fils de {ptf}, {prm}, vit à {ville} et appelle sa mère chaque semaine.
Pas de réponse de {pt} aux appels ; nouveau passage prévu {jour} au {num} {rue}.
Justificatif de domicile et avis d'imposition {annee} à fournir avant le {date}.
Tél. de {pt} : rappeler avant {heure}.
Lors de la visite du {date} au {num} {rue}, {pt}, {agev} ans, dit ne plus pouvoir faire sa toilette seul{e} ; intervention du {ssiad!} demandée avec l'accord de sa fille {prf}.
Synthèse au {ccas!} : {pt}, sorti{e} du {chu!}, a besoin du {ssiad!} et de {admr} en attendant une place à {ehpad}.
Situation de {pt} évoquée en commission : dette de loyer de {montant} envers {bailleur}, dossier FSL instruit par {mds} et accompagnement social proposé par {cd}.
{pt}, reconnu{e} travailleur handicapé par {mdph}, souhaite reprendre une activité ; rendez-vous fixé avec {misloc} à {ville} le {date}.
Aujourd'hui, entretien téléphonique avec {pt} : {il} confirme son accord pour une entrée à {ehpad} et souhaite que son fils {prm}, qui habite {dep_in}, soit associé aux démarches.
{ptf}, née à {ville} et arrivée {dep_in} en {annee}, est hébergée chez sa sœur {prf} depuis sa sortie de {hopital}.
""".strip().splitlines()]

# fmt: on
# ----------------------------------------------------------------------------- slot fillers
VOWELS = set("AEIOUÀÂÄÉÈÊËÎÏÔÖÙÛÜaeiouàâäéèêëîïôöùûü")


def starts_vowel(x: str) -> bool:
    return x[0] in VOWELS or x[:2] in ("Hô", "Hé", "He", "Hu") or x[:3] == "Hab"


def join(prep: str, name: str) -> str:
    return prep + name if prep.endswith("'") else f"{prep} {name}"


def de(x: str) -> str:
    return ("d'" if starts_vowel(x) else "de ") + x


def person(g: str | None = None, form: str = "pt"):
    def fill(rng, ctx):
        gg = g or rng.choice("fm")
        ctx["g"] = gg
        first, last = rng.choice(FIRST_F if gg == "f" else FIRST_M), rng.choice(LAST)
        if form == "pr":
            return [(first, "PER")]
        if form == "pn":
            return [(f"{first} {last}", "PER")]
        title = rng.choice(("Mme", "Mme", "Madame") if gg == "f" else ("M.", "M.", "Monsieur"))
        return [(title + " ", None), (f"{first} {last}" if rng.random() < 0.35 else last, "PER")]

    return fill


def dr(rng, ctx):
    name = rng.choice(LAST)
    if rng.random() < 0.3:
        name = f"{rng.choice(FIRST_F + FIRST_M)} {name}"
    return [(rng.choice(("Dr", "Dr", "Docteur", "Pr")) + " ", None), (name, "PER")]


def dept_de(rng):
    name, d, _, _ = rng.choice(DEPTS)
    return join(d, name)


def org(article: str, make):
    return lambda rng, ctx: [(article, "ART"), (make(rng), "ORG")]


def prep_loc(items):
    def fill(rng, ctx):
        prep, name = rng.choice(items)
        return [(prep if prep.endswith("'") else prep + " ", None), (name, "LOC")]

    return fill


def date(rng):
    d = rng.randint(1, 28)
    if rng.random() < 0.25:
        return f"{d:02d}/{rng.randint(1, 12):02d}/{rng.randint(2024, 2026)}"
    return f"{'1er' if d == 1 else d} {rng.choice(MOIS)} {rng.randint(2024, 2026)}"


def montant(rng):
    k = rng.random()
    if k < 0.4:
        return f"{rng.randint(30, 900)} €"
    if k < 0.7:
        return f"{rng.randint(1, 4)} {rng.randint(0, 999):03d} euros"
    return f"{rng.randint(20, 700)},{rng.randint(0, 99):02d} €"


def plain(make):
    return lambda rng, ctx: [(make(rng), None)]


def city_org(article: str, *heads: str):
    return org(article, lambda r: r.choice(heads) + " " + de(r.choice(CITIES)))


# fmt: off
SLOTS = {
    "pt": person(), "ptf": person("f"), "ptm": person("m"),
    "pn": person(form="pn"), "pnf": person("f", "pn"), "pnm": person("m", "pn"),
    "pr": person(form="pr"), "prf": person("f", "pr"), "prm": person("m", "pr"),
    "nom": lambda rng, ctx: [(rng.choice(LAST), "PER")], "dr": dr,
    "ville": lambda rng, ctx: [(rng.choice(CITIES), "LOC")], "rue": lambda rng, ctx: [(rng.choice(STREETS), "LOC")],
    "quartier": prep_loc(QUARTIERS), "pays": prep_loc(PAYS),
    "dep_in": prep_loc([(i, n) for n, _, i, _ in DEPTS]), "region_in": prep_loc([(i, n) for n, i in REGIONS]),
    "ccas": city_org("le ", "CCAS", "CCAS", "CCAS", "CCAS", "Centre communal d'action sociale"),
    "mdph": org("la ", lambda r: "MDPH " + dept_de(r)), "caf": org("la ", lambda r: "CAF " + dept_de(r)),
    "cpam": org("la ", lambda r: "CPAM " + dept_de(r)), "carsat": org("la ", lambda r: r.choice(CARSATS)),
    "chu": org("le ", lambda r: "CHU " + de(r.choice(CHU_CITIES)) if r.random() < 0.7
               else "Centre hospitalier " + de(r.choice(OTHER_CITIES))),
    "hopital": org("le ", lambda r: r.choice(HOPITAUX)), "ehpad": org("le ", lambda r: r.choice(EHPADS)),
    "ssiad": city_org("le ", "SSIAD", "SSIAD ADMR"),
    "admr": org("la ", lambda r: r.choice(("ADMR", "ADMR " + de(r.choice(CITIES)), "ADMR " + dept_de(r)))),
    "mjpm": org("la ", lambda r: r.choice(("UDAF " + r.choice(DEPTS)[3], "UDAF " + dept_de(r),
                                           "ATMP " + dept_de(r), "Association tutélaire " + dept_de(r)))),
    "ars": org("la ", lambda r: "ARS " + r.choice(REGIONS)[0]),
    "cd": org("le ", lambda r: "Conseil départemental " + dept_de(r)),
    "mds": city_org("la ", "Maison départementale des solidarités", "MDS"), "pmi": city_org("la ", "PMI"),
    "clic": city_org("le ", "CLIC"), "cmp": city_org("le ", "CMP"), "tj": city_org("le ", "tribunal judiciaire"),
    "misloc": city_org("la ", "Mission locale"),
    "bailleur": org("", lambda r: r.choice(BAILLEURS)), "saad": org("", lambda r: r.choice(SAADS)),
    "asso": lambda rng, ctx: (lambda a: [(a[0] + " " if a[0] else "", "ART"), (a[1], "ORG")])(rng.choice(ASSOS)),
    "entreprise": lambda rng, ctx: (lambda e: [("la ", "ART"), (e[3:], "ORG")] if e.startswith("la ")
                                    else [(e, "ORG")])(rng.choice(ENTREPRISES)),
    "e": lambda rng, ctx: [("e" if ctx["g"] == "f" else "", None)],
    "il": lambda rng, ctx: [("elle" if ctx["g"] == "f" else "il", None)],
    "agev": plain(lambda r: str(r.randint(67, 98))), "num": plain(lambda r: str(r.randint(1, 150))),
    "n": plain(lambda r: str(r.randint(2, 12))), "gir": plain(lambda r: str(r.randint(1, 4))),
    "taux": plain(lambda r: r.choice(("50 %", "79 %", "80 %", "au moins 80 %"))),
    "annee": plain(lambda r: str(r.randint(2015, 2025))), "mois": plain(lambda r: r.choice(MOIS)),
    "jour": plain(lambda r: r.choice(JOURS)), "date": plain(date), "montant": plain(montant),
    "heure": plain(lambda r: f"{r.randint(8, 17)}h{r.choice(('', '15', '30', '45'))}"),
}
# fmt: on


# ----------------------------------------------------------------------------- rendering
SLOT_RE = re.compile(r"\{(\w+?)(!?)\}|\[([^|\]]+)\|(PER|LOC|ORG)\]")
ELIDE_RE = re.compile(r"(?<!\w)(?:([Ll])[ea]|([Dd])e|([Qq]u)e) $")
CONTRACT = [
    (re.compile(r"(?<!\w)([Dd])e les $"), r"\1es "),
    (re.compile(r"(?<!\w)([Dd])e le $"), r"\1u "),
    (re.compile(r"(?<!\w)([Àà]) les $"), lambda m: ("A" if m[1] == "À" else "a") + "ux "),
    (re.compile(r"(?<!\w)([Àà]) le $"), lambda m: ("A" if m[1] == "À" else "a") + "u "),
]


def fix_tail(out: str, ent: str) -> str:
    """French elision / contraction in front of an entity: de le EHPAD -> de l'EHPAD, à le CHU -> au CHU."""
    if starts_vowel(ent):
        out = ELIDE_RE.sub(lambda m: (m[1] or m[2] or m[3]) + "'", out)
    for pat, rep in CONTRACT:
        out = pat.sub(rep, out)
    return out


def render(tpl: str, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    ctx = {"g": rng.choice("fm")}
    out, ents, pos = "", [], 0
    for m in SLOT_RE.finditer(tpl):
        out += tpl[pos : m.start()]
        pos = m.end()
        if m[3]:
            segs = [(m[3], m[4])]
        else:
            segs = SLOTS[m[1].lower()](rng, ctx)
            if m[2]:
                segs = [s for s in segs if s[1] != "ART"]
            if m[1][0].isupper():
                i = next(i for i, s in enumerate(segs) if s[0])
                segs[i] = (segs[i][0][0].upper() + segs[i][0][1:], segs[i][1])
        for text, lab in segs:
            if lab in ENT:
                last_end = ents[-1][1] if ents else 0
                new = fix_tail(out, text)
                assert new[:last_end] == out[:last_end], (tpl, out)
                out = new
                ents.append((len(out), len(out) + len(text), lab))
            out += text
    out += tpl[pos:]
    assert "  " not in out and out == out.strip(), out
    return out, ents


def to_bio(text: str, ents) -> tuple[list[str], list[str]]:
    words = split_words(text)
    starts, ends = {s for _, s, _ in words}, {e for _, _, e in words}
    for (s, e, _), nxt in zip(ents, ents[1:] + [(len(text) + 1, 0, "")], strict=False):
        assert s in starts and e in ends, f"entity {text[s:e]!r} not on word boundaries in {text!r}"
        assert e <= nxt[0], f"overlapping entities in {text!r}"
    tags = []
    for _, ws, we in words:
        tag = "O"
        for s, e, lab in ents:
            if ws < e and we > s:
                assert s <= ws and we <= e, text
                tag = ("B-" if ws == s else "I-") + lab
        tags.append(tag)
    return [w for w, _, _ in words], tags


# ----------------------------------------------------------------------------- main
HAND_TEXTS = [  # raw notes for `nerkd infer` demos: emojis, elisions, hyphenated places
    "Visite à l'EHPAD Les Tilleuls de Saint-Étienne ce matin : Mme Bernard va beaucoup mieux 🙂",
    "RDV CCAS mardi 14h avec M. Nguyen, ne pas oublier l'attestation CAF 📎",
    "Appel de l'UDAF 42 : la curatelle de M. Haddad est renouvelée jusqu'en 2027.",
    "Sortie du CHU de Saint-Étienne prévue vendredi ; passage de l'ADMR dès samedi 👍",
    "Aujourd'hui, le Dr Lefèvre a revu Mme Öztürk à l'hôpital Nord — rien à signaler.",
    "Mme Diallo quitte Aix-en-Provence pour Clermont-Ferrand, dossier MDPH à transférer.",
]


def labelled_pool() -> dict[str, list]:
    """Every labelled sentence (train, dev, test, texts, spans, conll, in this order) -> its entities."""
    rng = random.Random(SEED)
    total = N_TRAIN + N_DEV + N_TEST + N_TEXTS + N_SPANS + N_CONLL
    pool: dict[str, list] = {}  # insertion-ordered: deterministic, and dedupes across all splits
    while len(pool) < total:
        text, ents = render(rng.choice(TEMPLATES), rng)
        if text not in pool and MIN_WORDS <= len(split_words(text)) <= MAX_WORDS:
            pool[text] = ents
    return pool


def words_key(text: str) -> tuple[str, ...]:
    return tuple(w for w, _, _ in split_words(text))


def unlabeled_notes(n: int, pool: dict[str, list]) -> list[str]:
    """``n`` distinct notes from their own random stream, none equal to a labelled sentence.

    A draw is skipped when its text, or its words (as in the tokens of train/dev/test), equal
    those of a labelled sentence or of a hand-written note. The first ``k`` notes of a run for
    ``n >= k`` are the notes of a run for ``k``.
    """
    taken = set(pool) | set(HAND_TEXTS)
    taken_words = {words_key(t) for t in taken}
    rng = random.Random(UNLABELED_SEED)
    notes: dict[str, None] = {}
    skipped = 0
    while len(notes) < n:
        text, _ = render(rng.choice(TEMPLATES), rng)
        if text in notes or not MIN_WORDS <= len(split_words(text)) <= MAX_WORDS:
            continue
        if text in taken or words_key(text) in taken_words:
            skipped += 1
            continue
        notes[text] = None
    out = list(notes)
    assert not (set(out) & taken) and not ({words_key(t) for t in out} & taken_words)
    print(f"unlabelled notes: {len(out)} ({skipped} draws equal to a labelled sentence skipped)")
    return out


def write_unlabeled(n: int, path: Path) -> None:
    notes = unlabeled_notes(n, labelled_pool())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in notes), encoding="utf-8")
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    print(f"{shown}: {len(notes)} lines")


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic sample corpus in data/ (all made up).")
    parser.add_argument("--unlabeled", type=int, metavar="N",
                        help="write only N unlabelled notes (one per line), disjoint from every labelled file")
    parser.add_argument("--output", type=Path, default=OUT / "unlabeled.txt",
                        help="file for --unlabeled (default: data/unlabeled.txt)")
    args = parser.parse_args()
    assert len(TEMPLATES) >= 60 and len(set(TEMPLATES)) == len(TEMPLATES)
    assert len(set(FIRST_F + FIRST_M)) >= 60 and len(set(LAST)) >= 60
    if args.unlabeled is not None:
        if args.unlabeled < 1:
            parser.error("--unlabeled needs N >= 1")
        write_unlabeled(args.unlabeled, args.output)
        return
    sizes = [N_TRAIN, N_DEV, N_TEST, N_TEXTS, N_SPANS, N_CONLL]
    pool = labelled_pool()
    items, cuts = list(pool.items()), [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    train, dev, test, texts, spans, conll = (items[a:b] for a, b in zip(cuts, cuts[1:], strict=False))

    stats = {}
    for name, part in (("train", train), ("dev", dev), ("test", test)):
        lines, c = [], {"sentences": len(part), "tokens": 0, "PER": 0, "LOC": 0, "ORG": 0, "no_ent": 0, "ge3": 0}
        for text, ents in part:
            tokens, tags = to_bio(text, ents)
            lines.append(orjson.dumps({"tokens": tokens, "tags": tags}) + b"\n")
            c["tokens"] += len(tokens)
            for _, _, lab in ents:
                c[lab] += 1
            c["no_ent"] += not ents
            c["ge3"] += len(ents) >= 3
        (OUT / f"{name}.jsonl").write_bytes(b"".join(lines))
        stats[name] = c
    assert all(stats[s]["no_ent"] and stats[s]["ge3"] for s in stats)

    (OUT / "label2id.json").write_bytes(orjson.dumps(LABEL2ID, option=orjson.OPT_INDENT_2) + b"\n")

    raw = [t for t, _ in texts]
    for k, h in enumerate(HAND_TEXTS):
        raw.insert(3 + 6 * k, h)
    raw.insert(len(raw) // 2, "")  # exactly one empty line
    (OUT / "texts.txt").write_text("\n".join(raw) + "\n", encoding="utf-8")

    for text, ents in spans:
        to_bio(text, ents)  # boundary checks
    (OUT / "spans.jsonl").write_bytes(
        b"".join(
            orjson.dumps({"text": t, "entities": [{"start": s, "end": e, "label": lab} for s, e, lab in ents]}) + b"\n"
            for t, ents in spans
        )
    )
    blocks = ["".join(f"{w}\t{t}\n" for w, t in zip(*to_bio(text, ents), strict=True)) for text, ents in conll]
    (OUT / "sample.conll").write_text("\n".join(blocks), encoding="utf-8")

    print(f"{len(TEMPLATES)} templates, {len(set(FIRST_F + FIRST_M))} first names, {len(set(LAST))} last names")
    print("| split | sentences | tokens | PER | LOC | ORG | no entity | 3+ entities |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in stats.items():
        print(
            f"| {name} | {c['sentences']} | {c['tokens']} | {c['PER']} | {c['LOC']} | {c['ORG']} "
            f"| {c['no_ent']} | {c['ge3']} |"
        )
    print(f"texts.txt: {len(raw)} lines, spans.jsonl: {len(spans)}, sample.conll: {len(conll)} sentences")
    write_unlabeled(N_UNLABELED, OUT / "unlabeled.txt")


if __name__ == "__main__":
    main()
